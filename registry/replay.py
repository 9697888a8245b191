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

from registry.canonical import canonical

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
    waivers: list[tuple[Any, ...]] = field(default_factory=list)
    promote_approvers: list[str] = field(default_factory=list)


@dataclass
class Replay:
    """The state the log implies, built one event at a time."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[tuple[str, int], _Version] = field(default_factory=dict)
    aliases: dict[tuple[str, str], tuple[int, datetime, str]] = field(default_factory=dict)
    alias_history: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    policies: dict[str, Any] = field(default_factory=dict)
    policy_history: list[tuple[Any, ...]] = field(default_factory=list)

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
            (
                decision,
                actor,
                p["reason"],
                p["target_stage"],
                rec.fields["review_round"],
                at,
                p.get("channel"),
                p.get("claimed_by"),
            )
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

    def _waived(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        self._policy_known(p)
        rec = self._get(model, version)
        failed = [e for e in rec.evidence if e[0] == p["gate"] and not e[1]]
        if not failed:
            raise ValueError(f"waiver of {p['gate']}, which has no failed result")
        rec.waivers.append((p["gate"], actor, p["reason"], at, failed[-1][6]))

    def _policy_set(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        if p["sha256"] not in self.policies:
            raise ValueError(f"policy {p['sha256'][:12]} set before the log recorded it")
        self.policy_history.append((p["sha256"], actor, at, p["reason"]))

    def _policy(
        self, at: datetime, actor: str, model: str | None, version: int | None, p: dict[str, Any]
    ) -> None:
        if hashlib.sha256(canonical(p["document"])).hexdigest() != p["sha256"]:
            raise ValueError("policy document does not hash to its sha256")
        self.policies[p["sha256"]] = (p["document"], at, actor)
        if p.get("in_force"):
            self.policy_history.append((p["sha256"], actor, at, p["reason"]))


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
    "evidence.waived": Replay._waived,
    "policy.recorded": Replay._policy,
    "policy.set": Replay._policy_set,
}
