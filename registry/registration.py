"""Writing a new version: the per-model counter, the version row, lineage and history."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from registry.artifacts import Blob
from registry.audit import canonical
from registry.db.tables import datasets, models, stage_history, versions
from registry.entities import VersionSpec
from registry.errors import InvalidInput, first_invalid
from registry.stages import Stage
from registry.validate import check_name

# Invariant 1: the number comes from UPDATE … RETURNING on the model's counter, inside the same
# transaction as the version row, so a rollback returns the number and numbers stay gapless.
_BUMP = (
    models.update()
    .where(models.c.name == sa.bindparam("b_name"))
    .values(last_version=models.c.last_version + 1)
    .returning(models.c.id, models.c.last_version)
)
_NEW_MODEL = models.insert()
_VERSION = versions.insert().returning(versions.c.id)
_DATASETS = datasets.insert()
_HISTORY = stage_history.insert()


def check_spec(name: str, artifact_format: str, fields: dict[str, Any]) -> VersionSpec:
    """Refuse a bad name, format or version field before anything is stored or sent."""
    check_name(name)
    check_name(artifact_format, "artifact_format")
    if len(artifact_format) > 32:
        raise InvalidInput("artifact_format: at most 32 characters", field="artifact_format")
    try:
        return VersionSpec(**fields)
    except ValidationError as exc:
        raise first_invalid(exc, "", "version") from None


def insert_version(
    conn: Connection,
    *,
    name: str,
    actor: str,
    at: datetime,
    blob: Blob,
    artifact_format: str,
    spec: VersionSpec,
    metrics: dict[str, float],
) -> int:
    """Allocate the next version number of ``name`` and write the version; return the number.

    Runs inside the caller's write transaction, which already holds the write lock, so the
    first registration of a model cannot race another creating it.
    """
    bumped = conn.execute(_BUMP, {"b_name": name}).first()
    if bumped is None:
        conn.execute(
            _NEW_MODEL,
            {"name": name, "description": spec.description, "created_at": at, "created_by": actor},
        )
        bumped = conn.execute(_BUMP, {"b_name": name}).one()
    model_id, number = bumped
    lineage = spec.lineage
    version_id = conn.execute(
        _VERSION,
        {
            "model_id": model_id,
            "version": number,
            "stage": Stage.DEVELOPMENT.value,
            "review_round": 0,
            "artifact_uri": blob.uri,
            "artifact_sha256": blob.sha256,
            "artifact_size": blob.size,
            "artifact_format": artifact_format,
            "params": spec.params,
            "metrics": metrics,
            "tags": spec.tags,
            "input_schema": [c.model_dump() for c in spec.input_schema],
            "drift_reference": spec.drift_reference,
            "description": spec.description,
            "code_repo": lineage.code.repo,
            "code_commit": lineage.code.commit,
            "code_dirty": lineage.code.dirty,
            "run_id": lineage.run.flow_run_id,
            "flow_name": lineage.run.flow_name,
            "registered_by": actor,
            "registered_at": at,
            "stage_changed_at": at,
            "rolled_back": False,
        },
    ).scalar_one()
    if lineage.datasets:
        conn.execute(
            _DATASETS, [{"version_id": version_id, **d.model_dump(mode="json")} for d in lineage.datasets]
        )
    conn.execute(
        _HISTORY,
        {
            "model_id": model_id,
            "version_id": version_id,
            "version": number,
            "from_stage": None,
            "to_stage": Stage.DEVELOPMENT.value,
            "kind": "register",
            "actor": actor,
            "reason": None,
            "approved_by": None,
            "at": at,
        },
    )
    return number


def drift_reference_digest(reference: dict[str, Any] | None) -> str | None:
    """sha256 of a drift reference's canonical JSON (the log keeps the digest, not the bins)."""
    return None if reference is None else hashlib.sha256(canonical(reference)).hexdigest()


def event_payload(
    blob: Blob, artifact_format: str, spec: VersionSpec, metrics: dict[str, float]
) -> dict[str, Any]:
    """The ``version.registered`` payload: everything the version row holds, so replay can check it."""
    lineage = spec.lineage
    return {
        "artifact": {"sha256": blob.sha256, "uri": blob.uri, "size": blob.size, "format": artifact_format},
        "datasets": [d.model_dump(mode="json") for d in lineage.datasets],
        "code": lineage.code.model_dump(),
        "run": lineage.run.model_dump(),
        "metrics": metrics,
        "params": spec.params,
        "tags": spec.tags,
        "input_schema": [c.model_dump() for c in spec.input_schema],
        "drift_reference_sha256": drift_reference_digest(spec.drift_reference),
        "description": spec.description,
    }
