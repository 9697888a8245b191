"""Everything an evidence pack reads, through the public registry API only.

The embedded ``Registry`` and the ``RemoteRegistry`` client offer the same methods
(tests/service/test_api_parity.py keeps them in step), so a pack made here reads the same
whether the registry is a database file or a server, and a ``reader`` token is enough. Nothing
here touches ``reg.db``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry.entities import AuditEvent, ModelVersion, StageChange, VerifyReport
from registry.reports.naming import registry_name


@dataclass(frozen=True)
class PackReads:
    """What the registry answered for one version, read once."""

    version: ModelVersion
    changes: list[StageChange]  # this version's stage changes, oldest first
    events: list[AuditEvent]  # the model's events that concern this version, in chain order
    chain: VerifyReport
    registry: str  # where the registry lives, without credentials
    documents: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # policy sha -> document
    policy_now: dict[str, Any] | None = None  # the policy in force when the pack is made
    policy_now_sha256: str | None = None
    policy_warnings: list[str] = field(default_factory=list)

    def document(self, sha: Any) -> dict[str, Any] | None:
        """The policy recorded under ``sha`` (as an event names it), or None."""
        return self.documents.get(sha) if isinstance(sha, str) else None


def read_version(reg: Any, ref: str) -> PackReads:
    """Read ``ref`` and its history, events, chain check and policies from ``reg``.

    Refuses a bad reference or an unknown version, as ``Registry.get`` does.
    """
    v = reg.get(ref)
    changes = [c for c in reg.history(v.model) if c.version == v.version]
    events = [e for e in reg.audit_log(model=v.model) if concerns(e, v.version)]
    chain = reg.verify_audit()
    documents: dict[str, dict[str, Any] | None] = {}
    for e in events:
        sha = e.payload.get("policy_sha256")
        if isinstance(sha, str) and sha not in documents:
            documents[sha] = reg.policy_document(sha)
    now_doc, now_sha, warnings = _policy_now(reg)
    return PackReads(
        version=v,
        changes=changes,
        events=events,
        chain=chain,
        registry=registry_name(reg),
        documents=documents,
        policy_now=now_doc,
        policy_now_sha256=now_sha,
        policy_warnings=warnings,
    )


def concerns(event: AuditEvent, version: int) -> bool:
    """The event is about the version, or took it out of production for another one."""
    if event.version == version:
        return True
    payload = event.payload
    return payload.get("replaced") == version or payload.get("from_version") == version


def _policy_now(reg: Any) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """The policy in force, its sha256 and the registry's warnings about it."""
    # policy_info() seeds an empty registry (a write); ask the history first so a pack never writes.
    if not reg.policy_history():
        return None, None, []
    info = reg.policy_info()
    # The policy info may carry warnings (for example typed names counted on a server).
    warnings = [str(w) for w in (getattr(info, "warnings", None) or [])]
    return info.document, info.sha256, warnings
