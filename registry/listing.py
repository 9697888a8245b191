"""Listing queries: pages of versions and of models, newest first / by name, with filters.

A page is one query for the rows (served by the ``(model_id, version)`` unique index, newest
first, stopping after ``limit + 1`` matches) and one for their datasets. Aliases come with the
rows through a correlated subquery. Decisions, evidence and waivers are read only when asked
(three more queries for the whole page, not per version); otherwise they are None: not loaded.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.db.tables import aliases, approvals, datasets, evidence, models, versions, waivers
from registry.entities import DatasetRef, ModelSummary, ModelVersion, Page, Waiver
from registry.filters import Filters, make_token, read_token
from registry.queries import _dataset, decisions_for, evidence_for, model_row, to_version
from registry.stages import Stage

_OPS = {
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    "=": lambda c, v: c == v,
}
_SEP = ","  # alias names match NAME_RE, so they never contain a comma


def _conditions(filters: Filters, model_id: Any) -> list[Any]:
    """SQL conditions on ``versions`` for the filters (all must hold for the same version)."""
    conds: list[Any] = []
    if filters.stage is not None:
        conds.append(versions.c.stage == filters.stage.value)
    if filters.alias is not None:
        target = (
            sa.select(aliases.c.version_id)
            .where(aliases.c.model_id == model_id, aliases.c.alias == filters.alias)
            .scalar_subquery()
        )
        conds.append(versions.c.id == target)
    for key, value in filters.tags:
        conds.append(versions.c.tags[key].as_string() == value)
    for key, op, value in filters.metrics:
        conds.append(_OPS[op](versions.c.metrics[key].as_float(), value))
    return conds


def _alias_names() -> Any:
    return (
        sa.select(sa.func.aggregate_strings(aliases.c.alias, _SEP))
        .where(aliases.c.version_id == versions.c.id)
        .scalar_subquery()
        .label("alias_names")
    )


# Every column but the drift reference (bins per feature, the bulkiest column): ``get`` has it.
# The JSON columns come as text and are decoded with orjson: the json module's decoder was a
# third of the time of a full listing.
_JSON = ("params", "metrics", "tags", "input_schema")
_COLUMNS = [
    sa.cast(c, sa.Text).label(c.name) if c.name in _JSON else c
    for c in versions.c
    if c.name != "drift_reference"
]
_CHUNK = 1000  # ids per IN list: far below SQLite's bound on parameters


def _decode(row: Any) -> tuple[Any, Any, Any, Any]:
    return (_loads(row.params), _loads(row.metrics), _loads(row.tags), _loads(row.input_schema))


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # orjson is stricter than json (e.g. lone surrogates)
        return json.loads(text)


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def list_versions(
    conn: Connection,
    name: str,
    *,
    limit: int | None = None,
    page_token: str | None = None,
    before: int | None = None,
    filters: Filters | None = None,
    with_decisions: bool = False,
) -> Page[ModelVersion]:
    """A page of a model's versions, newest first; refuse an unknown model or a foreign token."""
    filters = filters or Filters()
    scope = f"versions:{name}"
    if page_token is not None:
        before = read_token(page_token, scope, filters)
    model_id = sa.select(models.c.id).where(models.c.name == name).scalar_subquery()
    stmt = (
        sa.select(*_COLUMNS, sa.null().label("drift_reference"), _alias_names())
        .where(versions.c.model_id == model_id, *_conditions(filters, model_id))
        .order_by(versions.c.version.desc())
    )
    if before is not None:
        stmt = stmt.where(versions.c.version < before)
    if limit is not None:
        stmt = stmt.limit(limit + 1)  # one more says whether a next page exists
    rows = conn.execute(stmt).all()
    if not rows:
        model_row(conn, name)  # an unknown model is refused, a known one just has no match
        return Page()
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if more else rows
    ids = [r.id for r in rows]
    ds: dict[int, list[DatasetRef]] = defaultdict(list)
    for chunk in _chunks(ids):
        for d in conn.execute(
            sa.select(datasets).where(datasets.c.version_id.in_(chunk)).order_by(datasets.c.id)
        ):
            ds[d.version_id].append(_dataset(d))
    decided = _decisions(conn, rows, ids) if with_decisions else None
    out = []
    for r in rows:
        names = r.alias_names.split(_SEP) if r.alias_names else []
        parts = (None, None, None) if decided is None else tuple(part[r.id] for part in decided)
        out.append(to_version(r, name, ds[r.id], names, *parts, decoded=_decode(r)))
    token = make_token(scope, rows[-1].version, filters) if more else None
    return Page(out, next_page_token=token)


def _decisions(conn: Connection, rows: list[Any], ids: list[int]) -> tuple[dict[int, Any], ...]:
    """Approvals, evidence and waivers of a page's versions: three queries for a page, not per row."""
    by_decision: dict[int, list[Any]] = defaultdict(list)
    by_gate: dict[int, list[Any]] = defaultdict(list)
    waived: dict[int, list[Waiver]] = defaultdict(list)
    for chunk in _chunks(ids):
        for a in conn.execute(
            sa.select(approvals).where(approvals.c.version_id.in_(chunk)).order_by(approvals.c.id)
        ):
            by_decision[a.version_id].append(a)
        for e in conn.execute(
            sa.select(evidence).where(evidence.c.version_id.in_(chunk)).order_by(evidence.c.id)
        ):
            by_gate[e.version_id].append(e)
        for w in conn.execute(
            sa.select(waivers, evidence.c.at.label("evidence_at"))
            .join(evidence, evidence.c.id == waivers.c.evidence_id)
            .where(waivers.c.version_id.in_(chunk))
            .order_by(waivers.c.id)
        ):
            waived[w.version_id].append(
                Waiver(gate=w.gate, evidence_at=w.evidence_at, actor=w.actor, reason=w.reason, at=w.at)
            )
    decisions = {r.id: decisions_for(conn, r.id, r.review_round, by_decision[r.id]) for r in rows}
    gates = {r.id: evidence_for(conn, r.id, by_gate[r.id]) for r in rows}
    return decisions, gates, {r.id: waived[r.id] for r in rows}


def list_models(
    conn: Connection,
    *,
    limit: int | None = None,
    page_token: str | None = None,
    filters: Filters | None = None,
) -> Page[ModelSummary]:
    """A page of models by name; with filters, the models having a version that matches them all."""
    filters = filters or Filters()
    after = read_token(page_token, "models", filters) if page_token is not None else None
    production = (
        sa.select(versions.c.version)
        .where(versions.c.model_id == models.c.id, versions.c.stage == Stage.PRODUCTION.value)
        .scalar_subquery()
        .label("production_version")
    )
    stmt = sa.select(models, production).order_by(models.c.name)
    if not filters.empty:
        match = sa.select(versions.c.id).where(
            versions.c.model_id == models.c.id, *_conditions(filters, models.c.id)
        )
        stmt = stmt.where(match.exists())
    if after is not None:
        stmt = stmt.where(models.c.name > after)
    if limit is not None:
        stmt = stmt.limit(limit + 1)
    rows = conn.execute(stmt).all()
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if more else rows
    alias_map: dict[int, dict[str, int]] = defaultdict(dict)
    for chunk in _chunks([m.id for m in rows]):
        for a in conn.execute(
            sa.select(aliases.c.model_id, aliases.c.alias, versions.c.version)
            .join(versions, versions.c.id == aliases.c.version_id)
            .where(aliases.c.model_id.in_(chunk))
        ):
            alias_map[a.model_id][a.alias] = a.version
    out = [
        ModelSummary.model_construct(
            name=m.name,
            description=m.description,
            created_at=m.created_at,
            created_by=m.created_by,
            latest_version=m.last_version,
            production_version=m.production_version,
            aliases=alias_map[m.id],
        )
        for m in rows
    ]
    token = make_token("models", rows[-1].name, filters) if more else None
    return Page(out, next_page_token=token)
