"""Evidence packs: everything an auditor needs about one version, gathered from the registry.

The pack is a pydantic model (``EvidencePack``); its JSON dump is the source of truth and the
Markdown and HTML renderings are views of it. Building a pack only reads the registry.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from registry.audit import canonical
from registry.entities import (
    Approval,
    ArtifactRef,
    AuditEvent,
    CodeRef,
    ColumnSpec,
    DatasetRef,
    Evidence,
    ModelVersion,
    ParamValue,
    RunRef,
    StageChange,
    VerifyReport,
)
from registry.reports.proof import DEFAULT_CAP, ChainProof, prove_events
from registry.stages import Stage

if TYPE_CHECKING:
    from registry.registry import Registry

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
    registry: str = Field(description="The registry database, without credentials.")
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


class LineageSection(_Section):
    """Where the version came from: data digests, the split rule, the code and the run."""

    datasets: list[DatasetRef] = Field(description="Datasets with role, URI, digest, rows, schema.")
    split_rule: dict[str, ParamValue] = Field(
        description="Tags and params whose key starts with 'split'; empty when not recorded."
    )
    code: CodeRef = Field(description="Repository, commit and dirty flag.")
    run: RunRef = Field(description="The producing flow run.")


class GateEntry(Evidence):
    """One gate result kept on the version, marked when it is the one that counts."""

    latest: bool = Field(description="True for the latest result of its gate, the one that counts.")


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


class PolicySection(_Section):
    """The policies in force at each decision on the version."""

    decisions: list[PolicyDecision] = Field(description="Decisions, in chain order.")
    documents: list[PolicyDocument] = Field(description="Each distinct policy once.")


class AuditSection(_Section):
    """The version's audit events and, with a checkpoint, the proof they are in the signed chain."""

    events: list[AuditEvent] = Field(description="Events about the version, in chain order.")
    proof: ChainProof | None = Field(default=None, description="Checkpoint proof; None without one.")


class EvidencePack(_Section):
    """The evidence pack of one version."""

    header: PackHeader = Field(description="Identity, generation time, chain verification.")
    model_card: ModelCard = Field(description="The model card.")
    lineage: LineageSection = Field(description="Data, split, code and run lineage.")
    gates: list[GateEntry] = Field(description="Every gate result, oldest first.")
    decisions: list[Approval] = Field(description="Approvals and rejections, oldest first.")
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
    reg: Registry,
    ref: str,
    *,
    checkpoint: str | Path | None = None,
    pubkey: str | Path | None = None,
    cap: int = DEFAULT_CAP,
    now: datetime | None = None,
) -> EvidencePack:
    """Gather the evidence pack of ``ref`` (``name/V`` or ``name@alias``).

    With ``checkpoint`` and ``pubkey`` the pack carries the chain segment from the version's
    first event to the checkpoint, checked against the signed head. Refuses a bad reference, an
    unknown version, and a checkpoint that does not parse or whose signature does not verify.
    """
    v = reg.get(ref)
    events = [e for e in reg.audit_log(model=v.model) if _concerns(e, v.version)]
    proof = None
    if checkpoint is not None or pubkey is not None:
        proof = prove_events(reg, events, checkpoint, pubkey, cap=cap)
    pack = EvidencePack(
        header=PackHeader(
            model=v.model,
            version=v.version,
            generated_at=now or datetime.now(UTC),
            registry=reg.db.safe_url,
            chain=reg.verify_audit(),
        ),
        model_card=_card(v),
        lineage=LineageSection(
            datasets=v.lineage.datasets,
            split_rule=_split_rule(v),
            code=v.lineage.code,
            run=v.lineage.run,
        ),
        gates=_gates(v),
        decisions=v.approvals,
        stage_history=[c for c in reg.history(v.model) if c.version == v.version],
        audit=AuditSection(events=events, proof=proof),
        policy=_policies(reg, events),
    )
    return pack.sealed()


def _concerns(event: AuditEvent, version: int) -> bool:
    """The event is about the version, or moved it out of production for another one."""
    if event.version == version:
        return True
    payload = event.payload
    return payload.get("replaced") == version or payload.get("from_version") == version


def _card(v: ModelVersion) -> ModelCard:
    return ModelCard.model_validate(v.model_dump(include=set(ModelCard.model_fields)))


def _split_rule(v: ModelVersion) -> dict[str, ParamValue]:
    """Split settings as the version records them (tags or params named ``split…``)."""
    found: dict[str, ParamValue] = {}
    for source in (v.params, v.tags):
        for key, value in source.items():
            if key.lower().startswith("split"):
                found.setdefault(key, value)
    return dict(sorted(found.items()))


def _gates(v: ModelVersion) -> list[GateEntry]:
    last = {e.gate: i for i, e in enumerate(v.evidence)}
    return [GateEntry(**e.model_dump(), latest=last[e.gate] == i) for i, e in enumerate(v.evidence)]


def _policies(reg: Registry, events: list[AuditEvent]) -> PolicySection:
    decisions: list[PolicyDecision] = []
    documents: dict[str, PolicyDocument] = {}
    for e in events:
        recorded = e.payload.get("policy_sha256")
        sha = recorded if isinstance(recorded, str) else None
        if sha is None and e.action not in DECISION_ACTIONS:
            continue
        if sha is not None and sha not in documents:
            documents[sha] = PolicyDocument(sha256=sha, document=reg.policy_document(sha))
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
    return PolicySection(decisions=decisions, documents=list(documents.values()))
