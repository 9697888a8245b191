"""The serving API's shapes: what ``/model``, ``/health``, ``/reload`` and ``/predict`` answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from registry import ColumnSpec, Lineage
from registry.stages import Stage


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelInfo(_Frozen):
    """The version a server is answering with (``GET /model``)."""

    name: str = Field(description="Model name.")
    version: int = Field(description="Version being served.")
    sha256: str = Field(description="Digest of the artifact that was loaded and verified.")
    stage: Stage = Field(description="The version's stage when it was loaded (production).")
    artifact_uri: str = Field(description="Where the artifact was fetched from.")
    artifact_format: str = Field(description="Serialization format (skops unless pickle was opted in).")
    loaded_at: datetime = Field(description="When this version was loaded and swapped in, UTC.")
    registered_by: str = Field(description="Registrant of the version.")
    registered_at: datetime = Field(description="Registration time, UTC.")
    lineage: Lineage = Field(description="Datasets, code commit and run the version came from.")
    input_schema: list[ColumnSpec] = Field(description="Columns and dtypes a /predict record must have.")


class Degraded(_Frozen):
    """Why the server is not serving what the registry says is production."""

    reason: str = Field(description="What failed: load failed, no production version, registry unreachable.")
    error: str = Field(description="The error, one line.")
    target_version: int | None = Field(default=None, description="The version the registry points at.")
    target_sha256: str | None = Field(default=None, description="Its artifact digest.")
    since: datetime = Field(description="First failure for this target, UTC.")
    attempts: int = Field(default=1, description="Failed attempts for this target so far.")


class Health(_Frozen):
    """``GET /health``: ok, or degraded while still answering with the last good version."""

    status: Literal["ok", "degraded"] = Field(description="ok, or degraded (still serving the old version).")
    model: str = Field(description="Model name.")
    version: int = Field(description="Version answering predictions.")
    checked_at: datetime | None = Field(default=None, description="Last registry check, UTC.")
    degraded: Degraded | None = Field(default=None, description="Why degraded; None when ok.")

    @model_validator(mode="after")
    def _degraded_has_reason(self) -> Health:
        if (self.status == "degraded") != (self.degraded is not None):
            raise ValueError("status is degraded exactly when a degraded reason is given")
        return self


class ReloadResult(_Frozen):
    """What one registry check did (``POST /reload``, and each poll)."""

    changed: bool = Field(description="A new version was loaded and swapped in.")
    previous_version: int = Field(description="Version served before the check.")
    version: int = Field(description="Version served after the check.")
    status: Literal["ok", "degraded"] = Field(description="Health after the check.")
    degraded: Degraded | None = Field(default=None, description="Why degraded; None when ok.")


class PredictResponse(_Frozen):
    """``POST /predict``: the predictions and the version that made them."""

    model: str = Field(description="Model name.")
    version: int = Field(description="The version that answered (the whole batch).")
    predictions: list[Any] = Field(description="One prediction per record, in order.")


class PredictRequest(BaseModel):
    """``POST /predict`` body (documentation; the handler validates against the version's schema)."""

    records: list[dict[str, Any]] = Field(
        description="JSON objects, one per row, with exactly the input schema's columns."
    )
