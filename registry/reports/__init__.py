"""Reports built from the registry: evidence packs per version (JSON, Markdown, HTML)."""

from registry.reports.evidence_pack import EvidencePack, build_pack
from registry.reports.proof import ChainLink, ChainProof, verify_segment
from registry.reports.render import PackFormat, render, write_pack

__all__ = [
    "ChainLink",
    "ChainProof",
    "EvidencePack",
    "PackFormat",
    "build_pack",
    "render",
    "verify_segment",
    "write_pack",
]
