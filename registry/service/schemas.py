"""Request bodies of the HTTP API. Responses are the registry's own entities.

Values the registry validates itself (names, versions, reasons, metrics) pass through as given,
so a refusal reads the same over HTTP as in embedded use.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: Any = Field(default=None, description="Who acts; must match the authenticated principal.")


class RegisterBody(Body):
    """Register a version whose artifact was uploaded with ``PUT /api/v1/blobs/{sha256}``."""

    sha256: Any = Field(description="Digest of the uploaded artifact.")
    artifact_format: Any = Field(default="file", description="Serialization format: skops, pickle, file…")
    fields: dict[str, Any] = Field(
        default_factory=dict, description="VersionSpec fields: params, metrics, tags, lineage, input_schema…"
    )


class TransitionBody(Body):
    stage: Any = Field(description="Target stage.")
    reason: Any = Field(default=None, description="Why.")


class DecisionBody(Body):
    reason: Any = Field(default=None, description="Why (required for a reject).")
    stage: Any = Field(default="production", description="Stage the decision is for.")
    claimed_by: Any = Field(default=None, description="A name typed into a form, recorded as a claim.")


class ApproveBody(DecisionBody):
    code: Any = Field(default=None, description="A one-time approval code.")


class CodeBody(Body):
    valid_for: Any = Field(default=600, description="Seconds the code stays valid.")
    stage: Any = Field(default="production", description="Stage the approval is for.")


class WaiveBody(Body):
    gate: Any = Field(description="The failed gate to waive.")
    reason: Any = Field(description="Why the failure may stand.")


class EvidenceBody(Body):
    gate: Any = Field(description="Gate name.")
    passed: Any = Field(description="Whether the gate passed.")
    value: Any = Field(default=None, description="Measured value.")
    threshold: Any = Field(default=None, description="Threshold compared against.")
    details: Any = Field(default=None, description="Gate-specific detail.")


class RollbackBody(Body):
    reason: Any = Field(description="Why.")
    expected_version: Any = Field(default=None, description="Refuse unless this version is in production.")


class AliasBody(Body):
    version: Any = Field(description="Version the alias points at.")


class RecordBody(Body):
    action: Any = Field(description="Dotted lowercase action, e.g. custom.note.")
    model: Any = Field(default=None, description="Model concerned.")
    version: Any = Field(default=None, description="Version concerned.")
    payload: Any = Field(default=None, description="Action-specific data.")


class DeploymentBody(Body):
    model: Any = Field(description="Model deployed.")
    version: Any = Field(description="Version deployed.")
    target: Any = Field(description="Deploy target.")
    ok: Any = Field(description="Whether the deploy succeeded.")
    payload: Any = Field(default=None, description="Target-specific detail.")


class PickleLoadBody(Body):
    model: Any = Field(description="Model loaded.")
    version: Any = Field(description="Version loaded.")
    ref: Any = Field(description="The reference asked for.")
    sha256: Any = Field(description="Digest of the loaded bytes.")
    fmt: Any = Field(description="pickle or joblib.")


class PolicyBody(Body):
    document: dict[str, Any] = Field(description="The policy as a JSON document.")
    reason: Any = Field(default=None, description="Why it changes.")


class UserBody(Body):
    name: Any = Field(description="User name.")
    roles: Any = Field(description="Roles: reader, pipeline, approver, operator, admin.")
    expires_in: Any = Field(default=None, description="Token lifetime in seconds; none = no expiry.")


class CodeOut(BaseModel):
    code: str = Field(description="The one-time approval code.")


class CountOut(BaseModel):
    count: int = Field(description="How many.")
