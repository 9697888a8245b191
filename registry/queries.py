"""Read side of the store: rows to entities, lookups and the auditor's questions."""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from registry.db.tables import (
    aliases,
    approvals,
    datasets,
    evidence,
    models,
    stage_history,
    versions,
    waivers,
)
from registry.entities import (
    Approval,
    ArtifactRef,
    CodeRef,
    ColumnSpec,
    DatasetRef,
    DatasetRole,
    Evidence,
    Lineage,
    ModelVersion,
    ProductionAt,
    RunRef,
    StageChange,
    VersionRef,
    Waiver,
)
from registry.errors import AliasNotFound, ModelNotFound, VersionNotFound
from registry.stages import Stage

T = TypeVar("T")

_RESOLVE_ALIAS = (
    sa.select(
        versions.c.version,
        versions.c.stage,
        versions.c.artifact_uri,
        versions.c.artifact_sha256,
        versions.c.artifact_format,
    )
    .select_from(
        models.join(aliases, aliases.c.model_id == models.c.id).join(
            versions, versions.c.id == aliases.c.version_id
        )
    )
    .where(models.c.name == sa.bindparam("name"), aliases.c.alias == sa.bindparam("alias"))
)


_MODEL = sa.select(models).where(models.c.name == sa.bindparam("name"))
_VERSION = (
    sa.select(versions, models.c.name.label("model_name"))
    .join(models, models.c.id == versions.c.model_id)
    .where(models.c.name == sa.bindparam("name"), versions.c.version == sa.bindparam("version"))
)
_PRODUCTION = sa.select(versions).where(
    versions.c.model_id == sa.bindparam("m"), versions.c.stage == Stage.PRODUCTION.value
)
_DATASETS = sa.select(datasets).where(datasets.c.version_id == sa.bindparam("v")).order_by(datasets.c.id)
_ALIAS_NAMES = sa.select(aliases.c.alias).where(aliases.c.version_id == sa.bindparam("v"))
_ALL_DECISIONS = (
    sa.select(approvals).where(approvals.c.version_id == sa.bindparam("v")).order_by(approvals.c.id)
)
_WAIVERS = (
    sa.select(waivers, evidence.c.at.label("evidence_at"))
    .join(evidence, evidence.c.id == waivers.c.evidence_id)
    .where(waivers.c.version_id == sa.bindparam("v"))
    .order_by(waivers.c.id)
)
_EVIDENCE = sa.select(evidence).where(evidence.c.version_id == sa.bindparam("v")).order_by(evidence.c.id)


def model_row(conn: Connection, name: str) -> Row[Any]:
    """The model's row; refuse an unknown name."""
    row = conn.execute(_MODEL, {"name": name}).first()
    if row is None:
        near = nearest_model(conn, name)
        hint = f"; did you mean {near!r}?" if near else ""
        raise ModelNotFound(f"model {name!r} not found{hint}", model=name, suggestion=near)
    return row


# Enough names to catch a typo in any registry a person browses; a bound keeps a miss cheap.
_NAMES = sa.select(models.c.name).order_by(models.c.name).limit(5000)


def nearest_model(conn: Connection, name: str) -> str | None:
    """The stored model name closest to ``name`` (difflib's ratio at least 0.6), or None."""
    names = list(conn.execute(_NAMES).scalars())
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return close[0] if close else None


def version_row(conn: Connection, name: str, version: int) -> Row[Any]:
    """The version's row joined with its model name; refuse an unknown model or version."""
    row = conn.execute(_VERSION, {"name": name, "version": version}).first()
    if row is None:
        model_row(conn, name)
        raise VersionNotFound(f"{name}/{version} not found", model=name, version=version)
    return row


_VERSION_AND_PRODUCTION = (
    sa.select(versions, models.c.name.label("model_name"))
    .join(models, models.c.id == versions.c.model_id)
    .where(
        models.c.name == sa.bindparam("name"),
        sa.or_(versions.c.version == sa.bindparam("version"), versions.c.stage == Stage.PRODUCTION.value),
    )
)


def version_and_production(conn: Connection, name: str, version: int) -> tuple[Row[Any], Row[Any] | None]:
    """The version's row and the model's production row (None when there is none, or it is this one)."""
    rows = conn.execute(_VERSION_AND_PRODUCTION, {"name": name, "version": version}).all()
    row = next((r for r in rows if r.version == version), None)
    if row is None:
        model_row(conn, name)
        raise VersionNotFound(f"{name}/{version} not found", model=name, version=version)
    old = next((r for r in rows if r.version != version), None)
    return row, old


def production_row(conn: Connection, model_id: int) -> Row[Any] | None:
    """The version currently in production, if any (served by the partial unique index)."""
    return conn.execute(_PRODUCTION, {"m": model_id}).first()


def resolve_alias(conn: Connection, name: str, alias: str) -> VersionRef:
    """Resolve ``name@alias`` with one indexed query; refuse an unknown model or alias."""
    row = conn.execute(_RESOLVE_ALIAS, {"name": name, "alias": alias}).first()
    if row is None:
        model_row(conn, name)
        raise AliasNotFound(f"{name}@{alias} is not set", model=name)
    return VersionRef.model_construct(
        model=name,
        version=row[0],
        stage=Stage(row[1]),
        artifact_uri=row[2],
        artifact_sha256=row[3],
        artifact_format=row[4],
    )


# Rows were validated on the way in, so entities are built without validation. ``_build`` is
# ``model_construct`` minus its walk over every field for defaults, which was half the cost of
# listing 10k versions: each call here passes every field of the class.
_new = object.__new__
_set = object.__setattr__


def _build(cls: type[T], values: dict[str, Any]) -> T:
    obj = _new(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _lineage(row: Row[Any], ds: list[DatasetRef]) -> Lineage:
    return _build(
        Lineage,
        {
            "datasets": ds,
            "code": _build(
                CodeRef, {"repo": row.code_repo, "commit": row.code_commit, "dirty": row.code_dirty}
            ),
            "run": _build(RunRef, {"flow_run_id": row.run_id, "flow_name": row.flow_name}),
        },
    )


def _dataset(row: Row[Any]) -> DatasetRef:
    return _build(
        DatasetRef,
        {
            "role": DatasetRole(row.role),
            "uri": row.uri,
            "sha256": row.sha256,
            "rows": row.rows,
            "schema_fingerprint": row.schema_fingerprint,
        },
    )


def to_version(
    row: Row[Any],
    model: str,
    ds: list[DatasetRef],
    alias_names: list[str],
    decisions: list[Approval] | None = None,
    gates: list[Evidence] | None = None,
    waived: list[Waiver] | None = None,
    decoded: tuple[Any, Any, Any, Any] | None = None,
) -> ModelVersion:
    """Assemble a version entity from its row and child records (None: not read).

    ``decoded`` is (params, metrics, tags, input_schema) when the caller decoded them itself.
    """
    params, metrics, tags, schema = decoded or (row.params, row.metrics, row.tags, row.input_schema)
    artifact = {
        "uri": row.artifact_uri,
        "sha256": row.artifact_sha256,
        "size": row.artifact_size,
        "format": row.artifact_format,
    }
    return _build(
        ModelVersion,
        {
            "model": model,
            "version": row.version,
            "stage": Stage(row.stage),
            "artifact": _build(ArtifactRef, artifact),
            "params": params,
            "metrics": metrics,
            "tags": tags,
            "lineage": _lineage(row, ds),
            # model_construct here fills any field a stored column spec predates.
            "input_schema": [ColumnSpec.model_construct(**c) for c in schema],
            "drift_reference": row.drift_reference,
            "description": row.description,
            "registered_by": row.registered_by,
            "registered_at": row.registered_at,
            "stage_changed_at": row.stage_changed_at,
            "review_round": row.review_round,
            "rolled_back": row.rolled_back,
            "rollback_reason": row.rollback_reason,
            "aliases": sorted(alias_names),
            # None: not read (a listing row); a full version always passes lists.
            "approvals": decisions,
            "evidence": gates,
            "waivers": waived,
        },
    )


def decision_rows(conn: Connection, version_id: int) -> list[Row[Any]]:
    """Every decision row on a version, oldest first."""
    return conn.execute(_ALL_DECISIONS, {"v": version_id}).all()


def decisions_for(
    conn: Connection, version_id: int, review_round: int, rows: list[Any] | None = None
) -> list[Approval]:
    """All decisions on a version, oldest first; ``current`` marks those of this round."""
    rows = rows if rows is not None else decision_rows(conn, version_id)
    return [
        Approval(
            decision=r.decision,
            actor=r.actor,
            reason=r.reason,
            target_stage=Stage(r.target_stage),
            at=r.at,
            review_round=r.review_round,
            current=r.review_round == review_round,
            channel=r.channel,
            claimed_by=r.claimed_by,
        )
        for r in rows
    ]


def waivers_for(conn: Connection, version_id: int) -> list[Waiver]:
    """The waivers on a version, oldest first, each with the time of the result it waives."""
    rows = conn.execute(_WAIVERS, {"v": version_id}).all()
    return [
        Waiver(gate=r.gate, evidence_at=r.evidence_at, actor=r.actor, reason=r.reason, at=r.at) for r in rows
    ]


def evidence_for(conn: Connection, version_id: int, rows: list[Any] | None = None) -> list[Evidence]:
    """All gate results on a version, oldest first."""
    rows = rows if rows is not None else conn.execute(_EVIDENCE, {"v": version_id}).all()
    return [
        Evidence(
            gate=r.gate,
            passed=r.passed,
            value=r.value,
            threshold=r.threshold,
            details=r.details,
            actor=r.actor,
            at=r.at,
        )
        for r in rows
    ]


def full_version(
    conn: Connection, name: str, version: int, row: Any = None, seen: dict[str, Any] | None = None
) -> ModelVersion:
    """One version with lineage, aliases, approvals and evidence.

    ``row`` is the version's current row when the caller already holds it (saves a lookup);
    ``seen`` holds decision and evidence rows the caller read in this transaction.
    """
    row = row if row is not None else version_row(conn, name, version)
    seen = seen or {}
    ds = [_dataset(d) for d in conn.execute(_DATASETS, {"v": row.id})]
    names = list(conn.execute(_ALIAS_NAMES, {"v": row.id}).scalars())
    read = seen.get("evidence")
    waived = [] if read is not None and not any(r.waived for r in read) else waivers_for(conn, row.id)
    return to_version(
        row,
        name,
        ds,
        names,
        decisions_for(conn, row.id, row.review_round, seen.get("decisions")),
        evidence_for(conn, row.id, read),
        waived,
    )


def stage_changes(conn: Connection, name: str) -> list[StageChange]:
    """A model's stage history, oldest first."""
    model = model_row(conn, name)
    rows = conn.execute(
        sa.select(stage_history).where(stage_history.c.model_id == model.id).order_by(stage_history.c.id)
    )
    return [
        StageChange(
            version=r.version,
            from_stage=Stage(r.from_stage) if r.from_stage else None,
            to_stage=Stage(r.to_stage),
            actor=r.actor,
            reason=r.reason,
            kind=r.kind,
            at=r.at,
        )
        for r in rows
    ]


def production_at(conn: Connection, name: str, at: datetime) -> ProductionAt:
    """Which version was in production at ``at``, since when, and who approved it."""
    model = model_row(conn, name)
    row = conn.execute(
        sa.select(stage_history)
        .where(
            stage_history.c.model_id == model.id,
            stage_history.c.at <= at,
            sa.or_(
                stage_history.c.to_stage == Stage.PRODUCTION.value,
                stage_history.c.from_stage == Stage.PRODUCTION.value,
            ),
        )
        .order_by(stage_history.c.at.desc(), stage_history.c.id.desc())
        .limit(1)
    ).first()
    if row is None or row.to_stage != Stage.PRODUCTION.value:
        return ProductionAt(model=name, at=at, version=None)
    return ProductionAt(
        model=name,
        at=at,
        version=row.version,
        since=row.at,
        promoted_by=row.actor,
        approved_by=list(row.approved_by or []),
        how=row.kind,
    )


def impact(
    conn: Connection, *, digest: str | None = None, uri: str | None = None, commit: str | None = None
) -> list[dict[str, Any]]:
    """Versions that used a dataset (by digest or URI) or a code commit (full SHA or prefix)."""
    cols = [models.c.name.label("model"), versions.c.version, versions.c.stage]
    base = versions.join(models, models.c.id == versions.c.model_id)
    if commit is not None:
        stmt = sa.select(*cols, versions.c.code_commit.label("commit")).select_from(base)
        cond = (
            versions.c.code_commit == commit
            if len(commit) >= 40
            else versions.c.code_commit.startswith(commit, autoescape=True)
        )
        stmt = stmt.where(cond)
    else:
        stmt = sa.select(*cols, datasets.c.role, datasets.c.uri, datasets.c.sha256).select_from(
            base.join(datasets, datasets.c.version_id == versions.c.id)
        )
        conds = []
        if digest is not None:
            conds.append(datasets.c.sha256 == digest)
        if uri is not None:
            conds.append(datasets.c.uri == uri)
        stmt = stmt.where(sa.or_(*conds))
    stmt = stmt.order_by(models.c.name, versions.c.version)
    return [dict(r._mapping) for r in conn.execute(stmt)]
