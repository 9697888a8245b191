"""Comparing the state tables with the replayed log; the first difference is one line.

Tables are read with plain SQL, without SQLAlchemy's type processing: both sides of every
comparison come from the same backend, so raw values compare directly and fast.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.canonical import canonical
from registry.replay import PRODUCTION, VERSION_FIELDS, LogInconsistent, Replay


def loads(value: Any) -> Any:
    """A JSON column's value: text on SQLite, already parsed on PostgreSQL."""
    if value.__class__ is not str and not isinstance(value, str | bytes):
        return value
    try:
        return _orjson_loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)  # what orjson refuses, e.g. lone surrogates


_orjson_loads = orjson.loads


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        return value.isoformat()
    text = value if isinstance(value, str) else canonical(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def _rows(conn: Connection, sql: str) -> list[Any]:
    return conn.execute(sa.text(sql)).all()


def compare(conn: Connection, replay: Replay) -> str | None:
    """The first difference between the tables and the replayed log, as one line; None if equal."""
    ids = {vid: (name, number) for vid, name, number in _rows(conn, _IDS)}
    for check in (_models, _versions, _children, _aliases, _alias_history, _policies, _policy_history):
        problem = check(conn, replay, ids)
        if problem:
            return f"state differs from the log at {problem}"
    return None


_IDS = "SELECT v.id, m.name, v.version FROM versions v JOIN models m ON m.id = v.model_id"


def _models(conn: Connection, replay: Replay, ids: dict[int, tuple[str, int]]) -> str | None:
    seen = set()
    cols = ("description", "created_at", "created_by", "last_version")
    for row in _rows(conn, f"SELECT name, {', '.join(cols)} FROM models ORDER BY name"):
        want = replay.models.get(row[0])
        if want is None:
            return f"{row[0]}: models has it, the log never registered it"
        seen.add(row[0])
        for key, have in zip(cols, row[1:], strict=True):
            if have != want[key]:
                return f"{row[0]}: {key} is {_show(have)}, the log says {_show(want[key])}"
    missing = sorted(set(replay.models) - seen)
    return f"{missing[0]}: the log registered it, models has no row" if missing else None


_JSON_FIELDS = {"metrics", "params", "tags", "input_schema"}
_FLAG_FIELDS = {"code_dirty", "rolled_back"}
_STORED = [f for f in VERSION_FIELDS if f != "drift_reference_sha256"]


def _drift_digest(stored: Any, want: str | None) -> str | None:
    if stored is None or stored == "null":  # SQL NULL, or a JSON null
        return None
    if isinstance(stored, str):  # stored canonical: hash the text as it is, unless that differs
        digest = hashlib.sha256(stored.encode()).hexdigest()
        if digest == want:
            return digest
    return hashlib.sha256(canonical(loads(stored))).hexdigest()


_JSON_AT = [i for i, f in enumerate(_STORED) if f in _JSON_FIELDS]


def _versions(conn: Connection, replay: Replay, ids: dict[int, tuple[str, int]]) -> str | None:
    sql = (
        f"SELECT m.name, v.version, v.drift_reference, {', '.join('v.' + f for f in _STORED)} "
        "FROM versions v JOIN models m ON m.id = v.model_id ORDER BY m.name, v.version"
    )
    seen = set()
    for row in _rows(conn, sql):
        key = (row[0], row[1])
        rec = replay.versions.get(key)
        if rec is None:
            return f"{row[0]}/{row[1]}: versions has it, the log never registered it"
        seen.add(key)
        want = rec.fields
        have = list(row[3:])
        for i in _JSON_AT:
            have[i] = loads(have[i])
        # Flags compare as stored (0/1 equal False/True); names are looked at only on a mismatch.
        if (
            have != [want[f] for f in _STORED]
            or _drift_digest(row[2], want["drift_reference_sha256"]) != want["drift_reference_sha256"]
        ):
            return _version_difference(key, row, have, want)
    missing = sorted(set(replay.versions) - seen)
    return f"{missing[0][0]}/{missing[0][1]}: the log registered it, versions has no row" if missing else None


def _version_difference(key: tuple[str, int], row: Any, have: list[Any], want: dict[str, Any]) -> str:
    fields = dict(zip(_STORED, have, strict=True))
    fields["drift_reference_sha256"] = _drift_digest(row[2], want["drift_reference_sha256"])
    for name in VERSION_FIELDS:
        value = _flag(fields[name]) if name in _FLAG_FIELDS else fields[name]
        if value != want[name] or (name in _FLAG_FIELDS and fields[name] not in (0, 1)):
            label = name.replace("_sha256", " digest") if name.endswith("sha256") else name
            return f"{key[0]}/{key[1]}: {label} is {_show(value)}, the log says {_show(want[name])}"
    return f"{key[0]}/{key[1]}: the row differs from the log"


# (label, table, columns, Replay attribute, JSON columns, flag columns)
_CHILDREN = (
    ("datasets", "datasets", ("role", "uri", "sha256", "rows", "schema_fingerprint"), "datasets", (), ()),
    (
        "stage history",
        "stage_history",
        ("version", "from_stage", "to_stage", "kind", "actor", "reason", "approved_by", "at"),
        "history",
        ("approved_by",),
        (),
    ),
    (
        "approvals",
        "approvals",
        ("decision", "actor", "reason", "target_stage", "review_round", "at", "channel", "claimed_by"),
        "decisions",
        (),
        (),
    ),
    ("waivers", "waivers", ("gate", "actor", "reason", "at", "evidence_at"), "waivers", (), ()),
    (
        "evidence",
        "evidence",
        ("gate", "passed", "value", "threshold", "details", "actor", "at"),
        "evidence",
        ("details",),
        ("passed",),
    ),
)


# A waiver is compared with the failed result it points at (same version, same gate).
_SOURCES = {
    "waivers": (
        "(SELECT w.id, w.version_id, w.gate, w.actor, w.reason, w.at, e.at AS evidence_at FROM waivers w "
        "JOIN evidence e ON e.id = w.evidence_id AND e.version_id = w.version_id AND e.gate = w.gate) AS w"
    )
}


def _children(conn: Connection, replay: Replay, ids: dict[int, tuple[str, int]]) -> str | None:
    for label, table, cols, attr, json_cols, flag_cols in _CHILDREN:
        json_at = [cols.index(c) for c in json_cols]
        flag_at = [cols.index(c) for c in flag_cols]
        actual: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        source = _SOURCES.get(table, table)
        for row in _rows(conn, f"SELECT version_id, {', '.join(cols)} FROM {source} ORDER BY id"):
            key = ids.get(row[0])
            if key is None:
                return f"{label} row for version id {row[0]}, which does not exist"
            values = row[1:]  # flags stay 0/1 here: equal to False/True, and anything else differs
            if json_at:
                values = list(values)
                for i in json_at:
                    values[i] = loads(values[i])
                values = tuple(values)
            if key in actual:
                actual[key].append(values)
            else:
                actual[key] = [values]
        expected = {k: rows for k, rec in replay.versions.items() if (rows := getattr(rec, attr))}
        if actual == expected:
            continue
        for key in sorted(set(actual) | set(expected)):
            have = [
                tuple(_flag(v) if i in flag_at else v for i, v in enumerate(t)) for t in actual.get(key, [])
            ]
            want = expected.get(key, [])
            if have != want:
                return f"{key[0]}/{key[1]}: {_first_row_difference(label, cols, have, want)}"
    return None


def _first_row_difference(
    label: str, cols: tuple[str, ...], have: list[tuple[Any, ...]], want: list[tuple[Any, ...]]
) -> str:
    for i in range(max(len(have), len(want))):
        h = have[i] if i < len(have) else None
        w = want[i] if i < len(want) else None
        if h == w:
            continue
        if h is None:
            return f"{label} entry {i + 1} is missing, the log has {_row(cols, w)}"
        if w is None:
            return f"{label} entry {i + 1} is {_row(cols, h)}, the log has none"
        for name, a, b in zip(cols, h, w, strict=True):
            if a != b:
                return f"{label} entry {i + 1}: {name} is {_show(a)}, the log says {_show(b)}"
    return f"{label} differ"


def _row(cols: tuple[str, ...], row: tuple[Any, ...] | None) -> str:
    assert row is not None
    return ", ".join(f"{c}={_show(v)}" for c, v in list(zip(cols, row, strict=True))[:3])


def _aliases(conn: Connection, replay: Replay, ids: dict[int, tuple[str, int]]) -> str | None:
    sql = "SELECT model_id, alias, version_id, updated_at, updated_by FROM aliases"
    names = {mid: name for mid, name in _rows(conn, "SELECT id, name FROM models")}
    have: dict[tuple[str, str], tuple[Any, ...]] = {}
    for mid, alias, vid, at, by in _rows(conn, sql):
        target = ids.get(vid)
        if target is None or target[0] != names.get(mid):
            return f"{names.get(mid, mid)}@{alias}: points at version id {vid} of another model or none"
        have[(target[0], alias)] = (target[1], at, by)
    for key in sorted(set(have) | set(replay.aliases)):
        h, w = have.get(key), replay.aliases.get(key)
        if h != w:
            where = f"{key[0]}@{key[1]}"
            if h is None:
                return f"{where}: the log points it at version {w[0]}, aliases has no row"  # type: ignore[index]
            if w is None:
                return f"{where}: aliases points it at version {h[0]}, the log does not set it"
            for name, a, b in zip(("version", "updated_at", "updated_by"), h, w, strict=True):
                if a != b:
                    return f"{where}: {name} is {_show(a)}, the log says {_show(b)}"
    # The production alias follows the production stage.
    for (name, number), rec in replay.versions.items():
        if rec.fields["stage"] == PRODUCTION and replay.aliases.get((name, PRODUCTION), (None,))[0] != number:
            raise LogInconsistent(f"the log leaves {name}/{number} in production without the alias")
    return None


def _alias_history(conn: Connection, replay: Replay, ids: dict[int, tuple[str, int]]) -> str | None:
    sql = (
        "SELECT m.name, h.alias, h.version, h.previous, h.actor, h.at "
        "FROM alias_history h JOIN models m ON m.id = h.model_id ORDER BY h.id"
    )
    have: dict[str, list[tuple[Any, ...]]] = {}
    for r in _rows(conn, sql):
        have.setdefault(r[0], []).append(tuple(r[1:]))
    cols = ("alias", "version", "previous", "actor", "at")
    for name in sorted(set(have) | set(replay.alias_history)):
        h, w = have.get(name, []), replay.alias_history.get(name, [])
        if h != w:
            return f"{name}: {_first_row_difference('alias history', cols, h, w)}"
    return None


def _policies(conn: Connection, replay: Replay, ids: dict[int, tuple[str, int]]) -> str | None:
    have = {
        sha: (loads(doc), at, by)
        for sha, doc, at, by in _rows(conn, "SELECT sha256, document, recorded_at, recorded_by FROM policies")
    }
    for sha in sorted(set(have) | set(replay.policies)):
        h, w = have.get(sha), replay.policies.get(sha)
        if h != w:
            if h is None:
                return f"policy {sha[:12]}: the log records it, policies has no row"
            if w is None:
                return f"policy {sha[:12]}: policies has it, the log never recorded it"
            return f"policy {sha[:12]}: the stored document or its time differs from the log"
    return None


def _policy_history(conn: Connection, replay: Replay, ids: dict[int, tuple[str, int]]) -> str | None:
    have = [
        tuple(r) for r in _rows(conn, "SELECT sha256, set_by, set_at, reason FROM policy_history ORDER BY id")
    ]
    if have != replay.policy_history:
        return _first_row_difference(
            "policy history", ("sha256", "set_by", "set_at", "reason"), have, replay.policy_history
        )
    return None
