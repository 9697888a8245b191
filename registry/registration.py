"""Writing a new version: the per-model counter, the version row, lineage and history."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from registry import names
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
        known = conn.execute(sa.select(models.c.name)).scalars()
        names.refuse_lookalike(name, known, field="name", kind="model")
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


# --- input schema: from an example, or from a file ------------------------------------------

_SCHEMA_FIELD = "input_schema"
# dtype families a JSON payload can be checked against and converted to (deployments.payload).
_SERVABLE = "int64, float64, bool, str, category, datetime64[ns], Int64, boolean…"


def check_dtype(name: str, dtype: Any, field: str = _SCHEMA_FIELD) -> str:
    """``dtype`` as a pandas dtype name, if serving can check JSON against it; else ``InvalidInput``."""
    import pandas as pd

    if not isinstance(dtype, str) or not dtype.strip():
        raise InvalidInput(f"{field}: column {name}: dtype must be a non-empty string", field=field)
    try:
        pd.api.types.pandas_dtype(dtype.strip())
    except (TypeError, ValueError):
        raise InvalidInput(
            f"{field}: column {name}: {dtype!r} is not a pandas dtype (use {_SERVABLE})", field=field
        ) from None
    # The families deployments.payload checks JSON against; complex, timedelta, period… are not.
    low = dtype.strip().lower()
    servable = low.startswith(("float", "int", "uint", "datetime64", "string[")) or low in (
        "bool",
        "boolean",
        "object",
        "str",
        "string",
        "category",
    )
    if not servable or low.startswith("interval"):
        raise InvalidInput(
            f"{field}: column {name}: dtype {dtype!r} cannot be checked from JSON (use {_SERVABLE})",
            field=field,
        )
    return dtype.strip()


def schema_from_example(
    example: Any, estimator: Any = None, field: str = "input_example"
) -> list[dict[str, str]]:
    """The input schema of ``example`` (a DataFrame, a dict of columns, records or a 2-D array).

    Column names come from the estimator's ``feature_names_in_`` when it has them, checked
    against the example's columns (same set, none extra); dtypes come from the example. Refuses
    (``InvalidInput`` naming ``field``) an empty example, a non-string column name, columns that
    do not match the model's features, an array without names, and a dtype serving cannot check.
    Only names and dtypes are kept: no row of the example is stored.
    """
    import numpy as np
    import pandas as pd

    features = getattr(estimator, "feature_names_in_", None)
    names = None if features is None else [str(f) for f in features]
    if isinstance(example, np.ndarray):
        if example.ndim != 2:
            raise InvalidInput(f"{field}: a {example.ndim}-D array; give a 2-D table", field=field)
        if names is None:
            raise InvalidInput(
                f"{field}: an array has no column names and the model records no feature_names_in_; "
                "give a DataFrame",
                field=field,
            )
        if example.shape[1] != len(names):
            raise InvalidInput(
                f"{field}: {example.shape[1]} columns, the model has {len(names)} features", field=field
            )
        example = pd.DataFrame(example, columns=names)
    elif isinstance(example, dict | list):
        try:
            example = pd.DataFrame(example)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{field}: not a table ({exc})", field=field) from None
    if not isinstance(example, pd.DataFrame):
        raise InvalidInput(
            f"{field}: a {type(example).__name__}; give a DataFrame, dict of columns or records", field=field
        )
    if example.shape[1] == 0:
        raise InvalidInput(f"{field}: no columns", field=field)
    bad = [repr(c) for c in example.columns if not isinstance(c, str)]
    if bad:
        raise InvalidInput(f"{field}: column names must be strings, got {', '.join(bad[:5])}", field=field)
    if example.columns.duplicated().any():
        raise InvalidInput(f"{field}: duplicate column names", field=field)
    if names is not None:
        extra = sorted(set(example.columns) - set(names))
        absent = [n for n in names if n not in example.columns]
        if extra or absent:
            raise InvalidInput(
                f"{field}: columns do not match the model's feature_names_in_: "
                f"missing {absent}, not features {extra}",
                field=field,
            )
    order = names if names is not None else list(example.columns)
    return [{"name": c, "dtype": check_dtype(c, str(example[c].dtype), field)} for c in order]


def schema_from_file(path: Path, field: str) -> list[dict[str, str]]:
    """An input schema read from a file: a CSV/Parquet example's columns, or a JSON list of
    ``{name, dtype}``. Refuses an unreadable file, bad JSON and a bad item or dtype, naming
    ``field`` (``--input-example`` / ``--input-schema``) and the item."""
    suffix = Path(path).suffix.lower()
    if field == "--input-schema":
        return _schema_json(Path(path), field)
    import pandas as pd

    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, nrows=1000)  # dtypes from a sample; rows are not kept
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise InvalidInput(f"{field}: {Path(path).name}: give a .csv or .parquet file", field=field)
    except (OSError, ValueError, ImportError) as exc:
        raise InvalidInput(
            f"{field}: cannot read {Path(path).name}: {_first_line(exc)}", field=field
        ) from None
    return schema_from_example(frame, field=field)


def _schema_json(path: Path, field: str) -> list[dict[str, str]]:
    import json

    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{field}: cannot read {path.name}: {_first_line(exc)}", field=field) from None
    except ValueError as exc:
        raise InvalidInput(f"{field}: {path.name} is not valid JSON ({exc})", field=field) from None
    if not isinstance(items, list) or not items:
        raise InvalidInput(f'{field}: give a non-empty JSON list of {{"name", "dtype"}}', field=field)
    out: list[dict[str, str]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"name", "dtype"}:
            raise InvalidInput(f'{field}: item {i}: give exactly {{"name": ..., "dtype": ...}}', field=field)
        name = item["name"]
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"{field}: item {i}: name must be a non-empty string", field=field)
        if any(c["name"] == name for c in out):
            raise InvalidInput(f"{field}: item {i}: column {name!r} twice", field=field)
        out.append({"name": name, "dtype": check_dtype(name, item["dtype"], field)})
    return out


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
