"""State bound to the log: replay the audit events and compare every state table with the result.

The log is the record; the tables are a projection of it. ``Replay`` applies each verified
event the way the registry's write path does, and ``compare`` reads the tables and reports the
first row that differs, as one line naming the model and version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.audit import canonical

PRODUCTION = "production"
# Version columns compared field by field, in the order a difference is reported.
VERSION_FIELDS = (
    "stage",
    "artifact_sha256",
    "artifact_size",
    "artifact_uri",
    "artifact_format",
    "metrics",
    "params",
    "tags",
    "input_schema",
    "drift_reference_sha256",
    "description",
    "code_repo",
    "code_commit",
    "code_dirty",
    "run_id",
    "flow_name",
    "registered_by",
    "registered_at",
    "stage_changed_at",
    "review_round",
    "rolled_back",
    "rollback_reason",
)


class LogInconsistent(Exception):
    """The log itself describes an impossible history (it cannot be replayed)."""


@dataclass
class _Version:
    number: int
    fields: dict[str, Any]
    datasets: list[tuple[Any, ...]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    decisions: list[tuple[Any, ...]] = field(default_factory=list)
    evidence: list[tuple[Any, ...]] = field(default_factory=list)
    promote_approvers: list[str] = field(default_factory=list)


@dataclass
class Replay:
    """The state the log implies, built one event at a time."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[tuple[str, int], _Version] = field(default_factory=dict)
    aliases: dict[tuple[str, str], tuple[int, datetime, str]] = field(default_factory=dict)
    alias_history: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    policies: dict[str, Any] = field(default_factory=dict)

    def apply(
        self,
        seq: int,
        at: datetime,
        actor: str,
        action: str,
        model: str | None,
        version: int | None,
        p: dict[str, Any],
    ) -> None:
        """Apply one event; events outside the registry's state namespaces are ignored."""
        handler = _HANDLERS.get(action)
        if handler is None:
            return
        try:
            handler(self, at, actor, model, version, p)
        except (KeyError, TypeError, ValueError) as exc:
            raise LogInconsistent(f"event {seq} ({action}) cannot be replayed: {exc!r}") from None

    # --- helpers ------------------------------------------------------------------------

    def _get(self, model: str | None, version: Any) -> _Version:
        rec = self.versions.get((model, version))  # type: ignore[arg-type]
        if rec is None:
            raise KeyError(f"{model}/{version} was never registered")
        return rec

    def _move(
        self,
        rec: _Version,
        to: str,
        *,
        kind: str,
        actor: str,
        reason: str | None,
        at: datetime,
        approved_by: list[str] | None = None,
        rolled_back: bool = False,
    ) -> None:
        f = rec.fields
        rec.history.append((rec.number, f["stage"], to, kind, actor, reason, approved_by, at))
        f["stage"] = to
        f["review_round"] += 1
        f["stage_changed_at"] = at
        if rolled_back:
            f["rolled_back"] = True
            f["rollback_reason"] = reason
        if to == PRODUCTION and kind == "promote":
            rec.promote_approvers = list(approved_by or [])

    def _point(self, model: str, alias: str, new: int | None, actor: str, at: datetime) -> None:
        key = (model, alias)
        old = self.aliases.get(key)
        old_version = old[0] if old else None
        if old_version == new:
            return
        if new is None:
            del self.aliases[key]
        else:
            self.aliases[key] = (new, at, actor)
        self.alias_history.setdefault(model, []).append((alias, new, old_version, actor, at))

    # --- handlers -------------------------------------------------------------------------

    def _registered(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        assert model is not None and version is not None
        m = self.models.get(model)
        if m is None:
            m = self.models[model] = {
                "description": p["description"],
                "created_at": at,
                "created_by": actor,
                "last_version": 0,
            }
        if version != m["last_version"] + 1:
            raise ValueError(f"{model}/{version} registered after version {m['last_version']}")
        m["last_version"] = version
        art, code, run = p["artifact"], p["code"], p["run"]
        rec = _Version(
            number=version,
            fields={
                "stage": "development",
                "artifact_sha256": art["sha256"],
                "artifact_size": art["size"],
                "artifact_uri": art["uri"],
                "artifact_format": art["format"],
                "metrics": p["metrics"],
                "params": p["params"],
                "tags": p["tags"],
                "input_schema": p["input_schema"],
                "drift_reference_sha256": p["drift_reference_sha256"],
                "description": p["description"],
                "code_repo": code["repo"],
                "code_commit": code["commit"],
                "code_dirty": code["dirty"],
                "run_id": run["flow_run_id"],
                "flow_name": run["flow_name"],
                "registered_by": actor,
                "registered_at": at,
                "stage_changed_at": at,
                "review_round": 0,
                "rolled_back": False,
                "rollback_reason": None,
            },
            datasets=[
                (d["role"], d["uri"], d["sha256"], d["rows"], d["schema_fingerprint"]) for d in p["datasets"]
            ],
        )
        rec.history.append((version, None, "development", "register", actor, None, None, at))
        self.versions[(model, version)] = rec

    def _transitioned(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        self._policy_known(p)
        rec = self._get(model, version)
        if rec.fields["stage"] != p["from"]:
            raise ValueError(f"{model}/{version} moves from {p['from']} but is in {rec.fields['stage']}")
        self._move(rec, p["to"], kind="transition", actor=actor, reason=p["reason"], at=at)
        if p["from"] == PRODUCTION:
            self._point(model, PRODUCTION, None, actor, at)  # type: ignore[arg-type]

    def _promoted(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        self._policy_known(p)
        rec = self._get(model, version)
        replaced = p.get("replaced")
        if replaced is not None:
            old = self._get(model, replaced)
            self._move(
                old, "archived", kind="demote", actor=actor, reason=f"superseded by version {version}", at=at
            )
        self._move(
            rec,
            PRODUCTION,
            kind="promote",
            actor=actor,
            reason=p["reason"],
            at=at,
            approved_by=p["approved_by"],
        )
        self._point(model, PRODUCTION, version, actor, at)  # type: ignore[arg-type]

    def _policy_known(self, p: dict[str, Any]) -> None:
        sha = p["policy_sha256"]
        if sha not in self.policies:
            raise ValueError(f"decision under policy {sha[:12]}, which the log never recorded")

    def _decided(
        self,
        at: datetime,
        actor: str,
        model: str | None,
        version: int | None,
        p: dict[str, Any],
        decision: str,
    ) -> None:
        self._policy_known(p)
        rec = self._get(model, version)
        rec.decisions.append(
            (decision, actor, p["reason"], p["target_stage"], rec.fields["review_round"], at)
        )
        if p.get("moved_to"):
            self._move(rec, p["moved_to"], kind="reject", actor=actor, reason=p["reason"], at=at)

    def _rolled_back(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        self._policy_known(p)
        current = self._get(model, p["from_version"])
        target = self._get(model, p["to_version"])
        self._move(
            current, "archived", kind="rollback", actor=actor, reason=p["reason"], at=at, rolled_back=True
        )
        self._move(
            target,
            PRODUCTION,
            kind="rollback",
            actor=actor,
            reason=p["reason"],
            at=at,
            approved_by=target.promote_approvers,
        )
        self._point(model, PRODUCTION, p["to_version"], actor, at)  # type: ignore[arg-type]

    def _alias(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        if model not in self.models:
            raise KeyError(f"model {model} was never registered")
        if p["version"] is not None:
            self._get(model, p["version"])
        self._point(model, p["alias"], p["version"], actor, at)  # type: ignore[arg-type]

    def _evidence(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        rec = self._get(model, version)
        rec.evidence.append((p["gate"], p["passed"], p["value"], p["threshold"], p["details"], actor, at))

    def _policy(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        if hashlib.sha256(canonical(p["document"])).hexdigest() != p["sha256"]:
            raise ValueError("policy document does not hash to its sha256")
        self.policies[p["sha256"]] = (p["document"], at, actor)


_HANDLERS: dict[str, Any] = {
    "version.registered": Replay._registered,
    "version.transitioned": Replay._transitioned,
    "version.promoted": Replay._promoted,
    "version.approved": lambda r, *a: Replay._decided(r, *a, "approve"),
    "version.rejected": lambda r, *a: Replay._decided(r, *a, "reject"),
    "model.rolled_back": Replay._rolled_back,
    "alias.set": Replay._alias,
    "alias.removed": Replay._alias,
    "evidence.added": Replay._evidence,
    "policy.recorded": Replay._policy,
}


# --- comparing with the tables ------------------------------------------------------------
# Tables are read with plain SQL, without SQLAlchemy's type processing: both sides of every
# comparison come from the same backend, so raw values compare directly and fast.


def loads(value: Any) -> Any:
    """A JSON column's value: text on SQLite, already parsed on PostgreSQL."""
    if not isinstance(value, str | bytes):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)  # integers beyond 64 bits


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
    for check in (_models, _versions, _children, _aliases, _alias_history, _policies):
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


def _versions(conn: Connection, replay: Replay, ids: dict[int, tuple[str, int]]) -> str | None:
    sql = (
        f"SELECT m.name, v.version, v.drift_reference, {', '.join('v.' + f for f in _STORED)} "
        "FROM versions v JOIN models m ON m.id = v.model_id ORDER BY m.name, v.version"
    )
    seen = set()
    for row in _rows(conn, sql):
        key = (row[0], row[1])
        ref = f"{row[0]}/{row[1]}"
        rec = replay.versions.get(key)
        if rec is None:
            return f"{ref}: versions has it, the log never registered it"
        seen.add(key)
        drift = loads(row[2])
        have_fields = dict(zip(_STORED, row[3:], strict=True))
        have_fields["drift_reference_sha256"] = (
            None if drift is None else hashlib.sha256(canonical(drift)).hexdigest()
        )
        for name in VERSION_FIELDS:
            have = have_fields[name]
            if name in _JSON_FIELDS:
                have = loads(have)
            elif name in _FLAG_FIELDS:
                have = _flag(have)
            want = rec.fields[name]
            if have != want:
                label = name.replace("_sha256", " digest") if name.endswith("sha256") else name
                return f"{ref}: {label} is {_show(have)}, the log says {_show(want)}"
    missing = sorted(set(replay.versions) - seen)
    return f"{missing[0][0]}/{missing[0][1]}: the log registered it, versions has no row" if missing else None


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
        ("decision", "actor", "reason", "target_stage", "review_round", "at"),
        "decisions",
        (),
        (),
    ),
    (
        "evidence",
        "evidence",
        ("gate", "passed", "value", "threshold", "details", "actor", "at"),
        "evidence",
        ("details",),
        ("passed",),
    ),
)


def _children(conn: Connection, replay: Replay, ids: dict[int, tuple[str, int]]) -> str | None:
    for label, table, cols, attr, json_cols, flag_cols in _CHILDREN:
        json_at = [cols.index(c) for c in json_cols]
        flag_at = [cols.index(c) for c in flag_cols]
        actual: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        for row in _rows(conn, f"SELECT version_id, {', '.join(cols)} FROM {table} ORDER BY id"):
            key = ids.get(row[0])
            if key is None:
                return f"{label} row for version id {row[0]}, which does not exist"
            values = list(row[1:])
            for i in json_at:
                values[i] = loads(values[i])
            for i in flag_at:
                values[i] = _flag(values[i])
            actual.setdefault(key, []).append(tuple(values))
        for key in sorted(set(actual) | set(replay.versions)):
            have = actual.get(key, [])
            rec = replay.versions.get(key)
            want = getattr(rec, attr) if rec is not None else []
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
