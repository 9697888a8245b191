"""State bound to the log: replay the audit events and compare every state table with the result.

The log is the record; the tables are a projection of it. ``Replay`` applies each verified
event the way the registry's write path does, and ``compare`` reads the tables and reports the
first row that differs, as one line naming the model and version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.audit import canonical
from registry.db.tables import (
    alias_history,
    aliases,
    approvals,
    datasets,
    evidence,
    models,
    policies,
    stage_history,
    versions,
)

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
        rec.history.append((f["stage"], to, kind, actor, reason, approved_by, at))
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
        rec.history.append((None, "development", "register", actor, None, None, at))
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


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, datetime):
        return value.isoformat()
    text = value if isinstance(value, str) else canonical(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def compare(conn: Connection, replay: Replay) -> str | None:
    """The first difference between the tables and the replayed log, as one line; None if equal."""
    for check in (_models, _versions, _children, _aliases, _alias_history, _policies):
        problem = check(conn, replay)
        if problem:
            return f"state differs from the log at {problem}"
    return None


def _models(conn: Connection, replay: Replay) -> str | None:
    seen = set()
    for row in conn.execute(sa.select(models).order_by(models.c.name)):
        want = replay.models.get(row.name)
        if want is None:
            return f"{row.name}: models has it, the log never registered it"
        seen.add(row.name)
        for key in ("description", "created_at", "created_by", "last_version"):
            if getattr(row, key) != want[key]:
                return f"{row.name}: {key} is {_show(getattr(row, key))}, the log says {_show(want[key])}"
    missing = sorted(set(replay.models) - seen)
    return f"{missing[0]}: the log registered it, models has no row" if missing else None


def _version_ids(conn: Connection) -> dict[int, tuple[str, int]]:
    stmt = sa.select(versions.c.id, models.c.name, versions.c.version).join(
        models, models.c.id == versions.c.model_id
    )
    return {vid: (name, number) for vid, name, number in conn.execute(stmt)}


def _versions(conn: Connection, replay: Replay) -> str | None:
    cols = [c for c in versions.c if c.name not in ("id", "model_id", "version", "drift_reference")]
    stmt = (
        sa.select(models.c.name, versions.c.version, versions.c.drift_reference, *cols)
        .join(models, models.c.id == versions.c.model_id)
        .order_by(models.c.name, versions.c.version)
    )
    seen = set()
    for row in conn.execute(stmt):
        key = (row.name, row.version)
        ref = f"{row.name}/{row.version}"
        rec = replay.versions.get(key)
        if rec is None:
            return f"{ref}: versions has it, the log never registered it"
        seen.add(key)
        actual = row._mapping
        for name in VERSION_FIELDS:
            if name == "drift_reference_sha256":
                have = (
                    None
                    if row.drift_reference is None
                    else hashlib.sha256(canonical(row.drift_reference)).hexdigest()
                )
            else:
                have = actual[name]
            want = rec.fields[name]
            if have != want or type(have) is bool and type(want) is not bool:
                label = name.replace("_sha256", " digest") if name.endswith("sha256") else name
                return f"{ref}: {label} is {_show(have)}, the log says {_show(want)}"
    missing = sorted(set(replay.versions) - seen)
    return f"{missing[0][0]}/{missing[0][1]}: the log registered it, versions has no row" if missing else None


def _children(conn: Connection, replay: Replay) -> str | None:
    ids = _version_ids(conn)
    tables = (
        ("datasets", datasets, ("role", "uri", "sha256", "rows", "schema_fingerprint"), "datasets"),
        (
            "stage history",
            stage_history,
            ("from_stage", "to_stage", "kind", "actor", "reason", "approved_by", "at"),
            "history",
        ),
        (
            "approvals",
            approvals,
            ("decision", "actor", "reason", "target_stage", "review_round", "at"),
            "decisions",
        ),
        (
            "evidence",
            evidence,
            ("gate", "passed", "value", "threshold", "details", "actor", "at"),
            "evidence",
        ),
    )
    for label, table, cols, attr in tables:
        actual: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        stmt = sa.select(table.c.version_id, *(table.c[c] for c in cols)).order_by(table.c.id)
        for row in conn.execute(stmt):
            key = ids.get(row[0])
            if key is None:
                return f"{label} row for version id {row[0]}, which does not exist"
            actual.setdefault(key, []).append(tuple(row[1:]))
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


def _aliases(conn: Connection, replay: Replay) -> str | None:
    stmt = (
        sa.select(
            models.c.name, aliases.c.alias, versions.c.version, aliases.c.updated_at, aliases.c.updated_by
        )
        .join(models, models.c.id == aliases.c.model_id)
        .join(versions, versions.c.id == aliases.c.version_id)
    )
    have = {(r.name, r.alias): (r.version, r.updated_at, r.updated_by) for r in conn.execute(stmt)}
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


def _alias_history(conn: Connection, replay: Replay) -> str | None:
    stmt = (
        sa.select(
            models.c.name,
            alias_history.c.alias,
            alias_history.c.version,
            alias_history.c.previous,
            alias_history.c.actor,
            alias_history.c.at,
        )
        .join(models, models.c.id == alias_history.c.model_id)
        .order_by(alias_history.c.id)
    )
    have: dict[str, list[tuple[Any, ...]]] = {}
    for r in conn.execute(stmt):
        have.setdefault(r.name, []).append(tuple(r[1:]))
    cols = ("alias", "version", "previous", "actor", "at")
    for name in sorted(set(have) | set(replay.alias_history)):
        h, w = have.get(name, []), replay.alias_history.get(name, [])
        if h != w:
            return f"{name}: {_first_row_difference('alias history', cols, h, w)}"
    return None


def _policies(conn: Connection, replay: Replay) -> str | None:
    have = {r.sha256: (r.document, r.recorded_at, r.recorded_by) for r in conn.execute(sa.select(policies))}
    for sha in sorted(set(have) | set(replay.policies)):
        h, w = have.get(sha), replay.policies.get(sha)
        if h != w:
            if h is None:
                return f"policy {sha[:12]}: the log records it, policies has no row"
            if w is None:
                return f"policy {sha[:12]}: policies has it, the log never recorded it"
            return f"policy {sha[:12]}: the stored document or its time differs from the log"
    return None
