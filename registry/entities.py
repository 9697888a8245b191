"""Registry entities: the pydantic shapes that cross the API boundary."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from registry.stages import Stage
from registry.validate import NAME_RE, check_json, check_name  # noqa: F401  (re-exported)

ParamValue = str | int | float | bool | None
T = TypeVar("T")


class Page(list[T]):
    """A listing page: a plain list of rows that also carries the next page's token (None at the end)."""

    def __init__(self, rows: Any = (), next_page_token: str | None = None) -> None:
        super().__init__(rows)
        self.next_page_token = next_page_token


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetRole(StrEnum):
    """What a dataset was used for."""

    TRAIN = "train"
    EVAL = "eval"
    REFERENCE = "reference"


class DatasetRef(_Frozen):
    """A dataset a version was built from, identified by its content digest."""

    role: DatasetRole = Field(description="train, eval or reference.")
    uri: str = Field(description="Where the data was read from.")
    sha256: str | None = Field(default=None, max_length=64, description="sha256 of the data file's bytes.")
    rows: int | None = Field(default=None, ge=0, le=2**63 - 1, description="Row count.")
    schema_fingerprint: str | None = Field(
        default=None, max_length=64, description="sha256 of the sorted column:dtype list."
    )


class CodeRef(_Frozen):
    """The code a version was built from."""

    repo: str | None = Field(default=None, description="Repository URL or path.")
    commit: str | None = Field(default=None, max_length=64, description="Git commit SHA.")
    dirty: bool = Field(default=False, description="Whether the work tree had local changes.")


class RunRef(_Frozen):
    """The orchestration run that produced a version."""

    flow_run_id: str | None = Field(default=None, max_length=64, description="Prefect flow-run id.")
    flow_name: str | None = Field(default=None, max_length=256, description="Prefect flow name.")


class Lineage(_Frozen):
    """Data, code and run a version came from."""

    datasets: list[DatasetRef] = Field(default_factory=list, description="Datasets used.")
    code: CodeRef = Field(default_factory=CodeRef, description="Code commit.")
    run: RunRef = Field(default_factory=RunRef, description="Producing run.")


class ColumnSpec(_Frozen):
    """One input column the model expects."""

    name: str = Field(description="Column name.")
    dtype: str = Field(description="pandas dtype name, e.g. float64, int64, object, bool.")


class ArtifactRef(_Frozen):
    """The stored model artifact."""

    uri: str = Field(description="Where the blob lives.")
    sha256: str = Field(description="Hex sha256 of the bytes.")
    size: int = Field(ge=0, description="Size in bytes.")
    format: str = Field(default="file", description="Serialization format: skops, pickle, file…")


class VersionSpec(BaseModel):
    """What a caller supplies to register a version (besides the artifact)."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, ParamValue] = Field(default_factory=dict, description="Hyperparameters.")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Finite numbers (int or float; not text or bool)."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Free-form string tags.")
    lineage: Lineage = Field(default_factory=Lineage, description="Data, code and run lineage.")
    input_schema: list[ColumnSpec] = Field(
        default_factory=list, description="Columns and dtypes the model expects."
    )
    drift_reference: dict[str, Any] | None = Field(
        default=None, description="Bin edges and frequencies per feature, from training data."
    )
    description: str | None = Field(default=None, description="Free text.")

    @field_validator("metrics", mode="before")
    @classmethod
    def _finite_metrics(cls, value: Any) -> Any:
        from registry.errors import InvalidInput

        if not isinstance(value, dict):
            return value
        for key, v in value.items():
            if not isinstance(key, str) or not key:
                raise InvalidInput(f"metrics: key {key!r} must be a non-empty string", field="metrics")
            # A number, not text that reads as one: "0.5" stored as 0.5 would hide a caller's bug,
            # and over HTTP a JSON string is not a JSON number.
            if isinstance(v, str):
                raise InvalidInput(
                    f"metric {key}: {v!r} is not a number (a string)", field=f"metric {key}"
                )
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InvalidInput(f"metric {key}: {v!r} is not a number", field=f"metric {key}")
            try:
                number = float(v)
            except OverflowError:
                raise InvalidInput(f"metric {key}: {v!r} is not a number", field=f"metric {key}") from None
            if not math.isfinite(number):
                raise InvalidInput(f"metric {key}: {v!r} is not finite", field=f"metric {key}")
        return value

    @field_validator("params", "tags", mode="before")
    @classmethod
    def _string_keys(cls, value: Any, info: ValidationInfo) -> Any:
        from registry.errors import InvalidInput

        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str) or not key:
                    raise InvalidInput(
                        f"{info.field_name}: key {key!r} must be a non-empty string",
                        field=str(info.field_name),
                    )
        return value

    @model_validator(mode="after")
    def _same_on_every_backend(self) -> VersionSpec:
        # SQLite would keep NaN and NUL that PostgreSQL refuses; refuse them on both.
        check_json(self.metrics, "metrics")
        check_json(self.params, "params")
        check_json(self.tags, "tags")
        check_json(self.drift_reference, "drift_reference")
        check_json(self.description, "description")
        check_json(self.lineage.model_dump(mode="json"), "lineage")
        check_json([c.model_dump() for c in self.input_schema], "input_schema")
        return self


class Decision(StrEnum):
    """An approver's decision."""

    APPROVE = "approve"
    REJECT = "reject"


class Approval(_Frozen):
    """One approver's decision on a version, for a target stage, within one review round."""

    decision: Decision = Field(description="approve or reject.")
    actor: str = Field(description="Who decided.")
    reason: str | None = Field(default=None, description="Why.")
    target_stage: Stage = Field(description="The stage the decision is for.")
    at: datetime = Field(description="When, UTC.")
    review_round: int = Field(description="Stage-entry counter of the version when decided.")
    current: bool = Field(description="True while the decision still counts (same round).")
    channel: str | None = Field(default=None, description="How it arrived: cli, api, prefect-form…")
    claimed_by: str | None = Field(
        default=None, description="A name typed into a form and not authenticated: a claim, not an identity."
    )


class Waiver(_Frozen):
    """An approver's audited decision to let a failed gate result stand."""

    gate: str = Field(description="The gate waived.")
    evidence_at: datetime = Field(description="When the failed result it waives was recorded.")
    actor: str = Field(description="Who waived it.")
    reason: str = Field(description="Why.")
    at: datetime = Field(description="When, UTC.")


class PolicyInfo(_Frozen):
    """A policy that was put in force, with who set it and when."""

    sha256: str = Field(description="sha256 of the policy's canonical JSON.")
    document: dict[str, Any] = Field(description="The policy as JSON.")
    set_by: str = Field(description="Who put it in force.")
    set_at: datetime = Field(description="When, UTC.")
    reason: str | None = Field(default=None, description="Why.")
    warnings: list[str] = Field(
        default_factory=list,
        description="What a reader must know about this policy, e.g. that an admin turned "
        "authenticated_approvals off on the server (one line each).",
    )


class Evidence(_Frozen):
    """A gate result kept on a version. Append-only; the latest per gate counts."""

    gate: str = Field(description="Gate name, e.g. accuracy, fairness, data.")
    passed: bool = Field(description="Whether the gate passed.")
    value: float | None = Field(default=None, description="Measured value.")
    threshold: float | None = Field(default=None, description="Threshold compared against.")
    details: dict[str, Any] = Field(default_factory=dict, description="Gate-specific detail.")
    actor: str = Field(description="Who recorded it.")
    at: datetime = Field(description="When, UTC.")


class StageChange(_Frozen):
    """One entry of a model's stage history."""

    version: int = Field(description="Version that moved.")
    from_stage: Stage | None = Field(description="Stage before; None at registration.")
    to_stage: Stage = Field(description="Stage after.")
    actor: str = Field(description="Who moved it.")
    reason: str | None = Field(default=None, description="Why.")
    kind: str = Field(description="register, transition, promote, demote, reject or rollback.")
    at: datetime = Field(description="When, UTC.")


class ModelVersion(_Frozen):
    """A registered version with its current state."""

    model: str = Field(description="Model name.")
    version: int = Field(ge=1, description="Version number, gapless per model.")
    stage: Stage = Field(description="Current lifecycle stage.")
    artifact: ArtifactRef = Field(description="The stored artifact.")
    params: dict[str, ParamValue] = Field(default_factory=dict, description="Hyperparameters.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Metrics.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags.")
    lineage: Lineage = Field(default_factory=Lineage, description="Lineage.")
    input_schema: list[ColumnSpec] = Field(default_factory=list, description="Input columns.")
    drift_reference: dict[str, Any] | None = Field(default=None, description="Drift reference.")
    description: str | None = Field(default=None, description="Free text.")
    registered_by: str = Field(description="Registrant.")
    registered_at: datetime = Field(description="Registration time, UTC.")
    stage_changed_at: datetime = Field(description="Time of the last stage change, UTC.")
    review_round: int = Field(description="Counts stage entries; decisions of older rounds lapse.")
    rolled_back: bool = Field(default=False, description="Demoted by a rollback.")
    rollback_reason: str | None = Field(default=None, description="Reason of that rollback.")
    aliases: list[str] = Field(default_factory=list, description="Aliases pointing here.")
    # None means "not loaded" (a listing row without ``with_decisions``), never "there are none".
    approvals: list[Approval] | None = Field(
        default_factory=list, description="Decisions, oldest first; null when not loaded (listing rows)."
    )
    evidence: list[Evidence] | None = Field(
        default_factory=list, description="Gate results, oldest first; null when not loaded (listing rows)."
    )
    waivers: list[Waiver] | None = Field(
        default_factory=list, description="Waived failed gates, oldest first; null when not loaded."
    )

    @property
    def decisions_loaded(self) -> bool:
        """Whether approvals, evidence and waivers were read (a plain listing row leaves them out)."""
        return self.approvals is not None and self.evidence is not None and self.waivers is not None

    @property
    def ref(self) -> str:
        """``name/version``."""
        return f"{self.model}/{self.version}"


class VersionRef(_Frozen):
    """The cheap answer to "which version does this alias point at"."""

    model: str = Field(description="Model name.")
    version: int = Field(description="Version number.")
    stage: Stage = Field(description="Current stage.")
    artifact_uri: str = Field(description="Artifact URI.")
    artifact_sha256: str = Field(description="Artifact digest.")
    artifact_format: str = Field(description="Serialization format.")


class ModelSummary(_Frozen):
    """A model line."""

    name: str = Field(description="Model name.")
    description: str | None = Field(default=None, description="Free text.")
    created_at: datetime = Field(description="When the first version was registered.")
    created_by: str = Field(description="Who registered the first version.")
    latest_version: int = Field(description="Highest version number.")
    production_version: int | None = Field(default=None, description="Version in production.")
    aliases: dict[str, int] = Field(default_factory=dict, description="Alias -> version.")


class VersionPage(_Frozen):
    """One page of a model's versions, newest first."""

    versions: list[ModelVersion] = Field(description="The versions of this page, newest first.")
    next_page_token: str | None = Field(
        default=None, description="Opaque token for the next page; null on the last page."
    )


class ModelPage(_Frozen):
    """One page of models, by name."""

    models: list[ModelSummary] = Field(description="The models of this page, by name.")
    next_page_token: str | None = Field(
        default=None, description="Opaque token for the next page; null on the last page."
    )


class AliasChange(_Frozen):
    """One alias move, kept as history."""

    alias: str = Field(description="Alias name.")
    version: int | None = Field(description="New target; None when removed.")
    previous: int | None = Field(description="Old target; None when newly set.")
    actor: str = Field(description="Who moved it.")
    at: datetime = Field(description="When, UTC.")


class ProductionAt(_Frozen):
    """Answer to "which model was in production at time T, and who approved it"."""

    model: str = Field(description="Model name.")
    at: datetime = Field(description="The instant asked about, UTC.")
    version: int | None = Field(description="Version in production then; None if none.")
    since: datetime | None = Field(default=None, description="When it entered production.")
    promoted_by: str | None = Field(default=None, description="Who moved it into production.")
    approved_by: list[str] = Field(default_factory=list, description="Approvers of that entry.")
    how: str | None = Field(default=None, description="promote or rollback.")


class AuditEvent(_Frozen):
    """One link of the hash-chained audit trail."""

    seq: int = Field(ge=1, description="Position in the chain, from 1, gapless.")
    at: datetime = Field(description="When, UTC.")
    actor: str = Field(description="Who acted.")
    db_user: str | None = Field(default=None, description="Database session user (PostgreSQL).")
    action: str = Field(description="What was done, e.g. version.registered.")
    model: str | None = Field(default=None, description="Model concerned.")
    version: int | None = Field(default=None, description="Version concerned.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Action-specific data.")
    prev_hash: str = Field(description="Hash of the previous event (64 zeros for the first).")
    hash: str = Field(description="sha256(prev_hash ‖ canonical JSON of the event).")


class VerifyReport(_Frozen):
    """Result of recomputing the audit chain."""

    ok: bool = Field(description="True when every link verifies and the tables equal the replayed log.")
    events: int = Field(description="Events checked.")
    first_bad_seq: int | None = Field(default=None, description="First seq that fails (chain problems).")
    problem: str | None = Field(default=None, description="What is wrong there.")
    scope: str | None = Field(default=None, description="chain or state: which check failed.")
    noncanonical: int = Field(
        default=0, description="Events whose stored payload text is not canonical JSON (hashed re-encoded)."
    )

    @model_validator(mode="after")
    def _bad_says_where(self) -> VerifyReport:
        if not self.ok and self.problem is None:
            raise ValueError("a failed verification says what is wrong")
        if not self.ok and self.scope != "state" and self.first_bad_seq is None:
            raise ValueError("a broken chain names the first bad seq")
        return self

    @property
    def message(self) -> str:
        """One line for people: what verified, or the first thing that did not."""
        if self.ok:
            return f"audit chain OK: {self.events} events verified, state matches the log"
        if self.scope == "state":
            return str(self.problem)
        return f"audit chain BROKEN at seq {self.first_bad_seq}: {self.problem}"


class RollbackResult(_Frozen):
    """What a rollback did."""

    model: str = Field(description="Model name.")
    demoted: int = Field(description="Version taken out of production and marked rolled back.")
    restored: int = Field(description="Version put back into production.")
    reason: str = Field(description="Why.")
    actor: str = Field(description="Who rolled back.")
    at: datetime = Field(description="When, UTC.")
