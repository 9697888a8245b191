"""Artifact stores, selected by the artifact root: a local folder or ``s3://bucket/prefix``."""

from __future__ import annotations

from registry.artifacts.base import ArtifactStore, Blob, blob_key, check_digest, sha256_file
from registry.artifacts.local import LocalArtifactStore


def open_store(root: str) -> ArtifactStore:
    """Open the store for ``root``: ``s3://bucket/prefix`` or a local folder."""
    if root.startswith("s3://"):
        from registry.artifacts.s3 import S3ArtifactStore

        return S3ArtifactStore.from_uri(root)
    if root.startswith("file://"):
        root = root[len("file://") :]
    return LocalArtifactStore(root)


__all__ = [
    "ArtifactStore",
    "Blob",
    "LocalArtifactStore",
    "blob_key",
    "check_digest",
    "open_store",
    "sha256_file",
]
