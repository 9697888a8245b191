"""Evidence packs: everything an auditor needs about one version, gathered from the registry.

The pack is a pydantic model (``EvidencePack``); its JSON dump is the source of truth and the
Markdown and HTML renderings are views of it. Building a pack only reads the registry, through
its public API (``reads``), so it is the same against a database file and against a server.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from registry.audit import canonical
from registry.entities import (
    ArtifactRef,
    AuditEvent,
    CodeRef,
    ColumnSpec,
    DatasetRef,
    ModelVersion,
    ParamValue,
    RunRef,
    StageChange,
    VerifyReport,
)
from registry.reports.policy_toml import policy_toml
from registry.reports.proof import DEFAULT_CAP, ChainProof, prove_events
from registry.reports.reads import PackReads, read_version
from registry.reports.timeline import (
    DecisionEntry,
    GateEntry,
    Standing,
    WaiverEntry,
    build_timeline,
)
from registry.stages import Stage

# Audit actions that are governance decisions; any event that records a policy hash counts too.
DECISION_ACTIONS = frozenset(
    {"version.approved", "version.rejected", "version.promoted", "model.rolled_back"}
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PackHeader(_Section):
    """Who and what the pack is about, when it was made, and the registry's chain check."""

    model: str = Field(description="Model name.")
    version: int = Field(description="Version number.")
    generated_at: datetime = Field(description="When the pack was generated, UTC.")
    registry: str = Field(
        description="Where the registry lives (database URL with an absolute path, or the server's "
        "URL), without user, password or query."
    )
    chain: VerifyReport = Field(description="Result of recomputing the whole audit chain.")
    content_sha256: str = Field(
        default="",
        description="sha256 of the canonical JSON of this pack with this field removed "
        "(sorted keys, UTF-8, no insignificant whitespace).",
    )


class ModelCard(_Section):
    """What the version is: description, metrics, params, tags, inputs, registrant."""

    description: str | None = Field(description="Free text given at registration.")
    stage: Stage = Field(description="Stage when the pack was generated.")
    rolled_back: bool = Field(description="Demoted by a rollback.")
    rollback_reason: str | None = Field(description="Reason of that rollback.")
    aliases: list[str] = Field(description="Aliases pointing at the version.")
    metrics: dict[str, float] = Field(description="Metrics recorded at registration.")
    params: dict[str, ParamValue] = Field(description="Hyperparameters.")
    tags: dict[str, str] = Field(description="Tags.")
    input_schema: list[ColumnSpec] = Field(description="Columns and dtypes the model expects.")
    artifact: ArtifactRef = Field(description="The stored artifact and its digest.")
    registered_by: str = Field(description="Registrant.")
    registered_at: datetime = Field(description="Registration time, UTC.")
    standing: Standing = Field(description="Whether and why the version is in production.")


class LineageSection(_Section):
    """Where the version came from: data digests, the split rule, the code and the run."""

    datasets: list[DatasetRef] = Field(description="Datasets with role, URI, digest, rows, schema.")
    split_rule: dict[str, ParamValue] = Field(
        description="Tags and params whose key starts with 'split'; empty when not recorded."
    )
    code: CodeRef = Field(description="Repository, commit and dirty flag.")
    run: RunRef = Field(description="The producing flow run.")


class PolicyDecision(_Section):
    """A governance decision and the policy in force when it was taken."""

    seq: int = Field(description="Audit seq of the decision.")
    at: datetime = Field(description="When, UTC.")
    actor: str = Field(description="Who decided.")
    action: str = Field(description="Audit action.")
    policy_sha256: str | None = Field(
        description="sha256 of the canonical policy JSON in force; None when the event predates "
        "recorded policy hashes."
    )
    recorded: bool = Field(description="True when the event records the policy hash.")


class PolicyDocument(_Section):
    """One policy text, as stored, with its hash."""

    sha256: str = Field(description="sha256 of the canonical JSON of the document.")
    document: dict[str, Any] | None = Field(description="The policy; None when the registry lacks it.")
    toml: str | None = Field(
        default=None,
        description="The document as a TOML policy file, durations also in days and hours; it loads "
        "back to the same sha256. None when the registry lacks the document.",
    )


class PolicySection(_Section):
    """The policies in force at each decision on the version."""

    decisions: list[PolicyDecision] = Field(description="Decisions, in chain order.")
    documents: list[PolicyDocument] = Field(description="Each distinct policy once.")
    in_force_sha256: str | None = Field(
        default=None, description="The policy in force when the pack was made."
    )
    warnings: list[str] = Field(
        default_factory=list, description="What the registry warns about the policy in force now."
    )


class AuditEntry(AuditEvent):
    """An audit event in a version's pack: about the version, or context (another version's
    event that moved this one)."""

    about: Literal["version", "context"] = Field(
        description="version: the event is about this version; context: another version's event."
    )
    note: str | None = Field(default=None, description="What the event did to this version, when not plain.")


class AuditSection(_Section):
    """The version's audit events and, with a checkpoint, the proof they are in the signed chain."""

    events: list[AuditEntry] = Field(
        description="Events about the version and context events, in chain order."
    )
    proof: ChainProof | None = Field(default=None, description="Checkpoint proof; None without one.")


class EvidencePack(_Section):
    """The evidence pack of one version."""

    header: PackHeader = Field(description="Identity, generation time, chain verification.")
    model_card: ModelCard = Field(description="The model card.")
    lineage: LineageSection = Field(description="Data, split, code and run lineage.")
    gates: list[GateEntry] = Field(description="Every gate result, oldest first.")
    decisions: list[DecisionEntry] = Field(
        description="Approvals and rejections, oldest first, each with the state it had when it took effect."
    )
    waivers: list[WaiverEntry] = Field(
        default_factory=list, description="Waived failed gates, oldest first, each with its state."
    )
    stage_history: list[StageChange] = Field(description="The version's stage changes, oldest first.")
    audit: AuditSection = Field(description="Audit events and the checkpoint proof.")
    policy: PolicySection = Field(description="Policies in force at each decision.")

    def content_digest(self) -> str:
        """sha256 of the canonical JSON of the pack without ``header.content_sha256``."""
        body = self.model_dump(mode="json", exclude={"header": {"content_sha256"}})
        return hashlib.sha256(canonical(body)).hexdigest()

    def sealed(self) -> EvidencePack:
        """The pack with ``header.content_sha256`` filled in."""
        header = self.header.model_copy(update={"content_sha256": self.content_digest()})
        return self.model_copy(update={"header": header})


def build_pack(
    reg: Any,
    ref: str,
    *,
    checkpoint: str | Path | None = None,
    pubkey: str | Path | None = None,
    cap: int = DEFAULT_CAP,
    now: datetime | None = None,
) -> EvidencePack:
    """Gather the evidence pack of ``ref`` (``name/V`` or ``name@alias``).

    ``reg`` is a ``Registry`` or a ``RemoteRegistry``; only its public reads are used, so a
    ``reader`` token suffices. With ``checkpoint`` and ``pubkey`` the pack carries the chain
    segment from the version's first event to the checkpoint, checked against the signed head.
    Refuses a bad reference, an unknown version, and a checkpoint that does not parse or whose
    signature does not verify.
    """
    reads = read_version(reg, ref)
    v = reads.version
    at = now or datetime.now(UTC)
    proof = None
    if checkpoint is not None or pubkey is not None:
        proof = prove_events(reg, reads.events, checkpoint, pubkey, cap=cap)
    timeline = build_timeline(reads, at)
    pack = EvidencePack(
        header=PackHeader(
            model=v.model,
            version=v.version,
            generated_at=at,
            registry=reads.registry,
            chain=reads.chain,
        ),
        model_card=_card(v, timeline.standing),
        lineage=LineageSection(
            datasets=v.lineage.datasets,
            split_rule=_split_rule(v),
            code=v.lineage.code,
            run=v.lineage.run,
        ),
        gates=timeline.gates,
        decisions=timeline.decisions,
        waivers=timeline.waivers,
        stage_history=reads.changes,
        audit=AuditSection(events=[_entry(e, v.version) for e in reads.events], proof=proof),
        policy=_policies(reads),
    )
    return pack.sealed()


def _entry(event: AuditEvent, version: int) -> AuditEntry:
    """The event, marked as about this version or as context, with what it did to it."""
    payload = event.payload
    fields = event.model_dump()
    if event.version != version:
        if event.action == "version.promoted":
            note = f"version {event.version} promoted, replacing this version"
        elif event.action == "model.rolled_back":
            note = f"version {event.version} restored by rollback, rolling back this version"
        else:
            note = f"an event of version {event.version} that moved this version"
        return AuditEntry(**fields, about="context", note=note)
    note = None
    if event.action == "model.rolled_back":
        note = f"restored this version by rollback, rolling back version {payload.get('from_version')}"
    elif event.action == "version.promoted" and isinstance(payload.get("replaced"), int):
        note = f"promoted this version, replacing version {payload['replaced']}"
    return AuditEntry(**fields, about="version", note=note)


def _card(v: ModelVersion, standing: Standing) -> ModelCard:
    fields = v.model_dump(include=set(ModelCard.model_fields) - {"standing"})
    return ModelCard.model_validate({**fields, "standing": standing})


def _split_rule(v: ModelVersion) -> dict[str, ParamValue]:
    """Split settings as the version records them (tags or params named ``split…``)."""
    found: dict[str, ParamValue] = {}
    for source in (v.params, v.tags):
        for key, value in source.items():
            if key.lower().startswith("split"):
                found.setdefault(key, value)
    return dict(sorted(found.items()))


def _policies(reads: PackReads) -> PolicySection:
    decisions: list[PolicyDecision] = []
    documents: dict[str, PolicyDocument] = {}
    for e in reads.events:
        if e.version != reads.version.version:
            continue  # another version's decision: its own pack shows its policy
        recorded = e.payload.get("policy_sha256")
        sha = recorded if isinstance(recorded, str) else None
        if sha is None and e.action not in DECISION_ACTIONS:
            continue
        if sha is not None and sha not in documents:
            doc = reads.document(sha)
            documents[sha] = PolicyDocument(
                sha256=sha, document=doc, toml=policy_toml(doc) if doc is not None else None
            )
        decisions.append(
            PolicyDecision(
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                action=e.action,
                policy_sha256=sha,
                recorded=sha is not None,
            )
        )
    return PolicySection(
        decisions=decisions,
        documents=list(documents.values()),
        in_force_sha256=reads.policy_now_sha256,
        warnings=reads.policy_warnings,
    )
