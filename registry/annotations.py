"""Aliases and evidence: named pointers and gate results on versions."""

from __future__ import annotations

import json
import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry import audit, identity, lifecycle, names, queries
from registry.base import RegistryBase, now
from registry.db.tables import aliases, evidence
from registry.entities import Evidence
from registry.errors import InvalidInput, Refused
from registry.validate import check_actor, check_json, check_name, check_version


def _finite(number: float) -> bool:
    try:
        return math.isfinite(float(number))
    except OverflowError:  # an int beyond the float range
        return False


class Annotations(RegistryBase):
    """Aliases (with history) and append-only evidence."""

    def set_alias(self, name: str, alias: str, version: int, *, actor: str | None = None) -> None:
        """Point ``name@alias`` at a version; ``production`` is managed by stages and refused."""
        check_version(version)
        self._alias(name, alias, version, actor)

    def remove_alias(self, name: str, alias: str, *, actor: str | None = None) -> None:
        """Remove an alias; refuses ``production`` and an alias that is not set."""
        self._alias(name, alias, None, actor)

    def _alias(self, name: str, alias: str, version: int | None, actor: str | None) -> None:
        check_name(name)
        check_name(alias, "alias")
        if version is not None:
            check_version(version)
        if alias == lifecycle.PRODUCTION_ALIAS:
            raise Refused(
                "alias production follows the production stage; use transition or rollback", model=name
            )
        identity.require("alias", "set or remove an alias")
        who = identity.actor_for(actor)
        at = now()

        def work(conn: Connection) -> None:
            model = queries.model_row(conn, name)
            row = queries.version_row(conn, name, version) if version is not None else None
            if row is not None:
                known = conn.execute(sa.select(aliases.c.alias).where(aliases.c.model_id == model.id))
                names.refuse_lookalike(
                    alias, [lifecycle.PRODUCTION_ALIAS, *known.scalars()], field="alias", kind="alias"
                )
            old = lifecycle.point_alias(conn, model.id, alias, row, actor=who, at=at)
            if version is None and old is None:
                queries.resolve_alias(conn, name, alias)  # raises AliasNotFound
            action = "alias.set" if version is not None else "alias.removed"
            self._audit(
                conn, at, who, action, name, version, {"alias": alias, "version": version, "previous": old}
            )

        self.db.transact(work)

    def add_evidence(
        self,
        name: str,
        version: int,
        *,
        gate: str,
        passed: bool,
        value: float | None = None,
        threshold: float | None = None,
        details: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> Evidence:
        """Attach a gate result to a version (append-only; the latest per gate counts)."""
        check_name(name)
        check_version(version)
        check_actor(gate, "gate")
        if not isinstance(passed, bool):
            raise InvalidInput(f"passed: {passed!r} must be true or false", field="passed")
        numbers: dict[str, float | None] = {}
        for label, number in (("value", value), ("threshold", threshold)):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int | float) or not _finite(number)
            ):
                raise InvalidInput(f"{label}: {number!r} is not a finite number", field=label)
            numbers[label] = None if number is None else float(number)
        value, threshold = numbers["value"], numbers["threshold"]
        if details is not None and not isinstance(details, dict):
            raise InvalidInput(f"details: {type(details).__name__} is not a mapping", field="details")
        check_json(details or {}, "details")
        identity.require("evidence", "record gate evidence")
        try:
            clean = json.loads(audit.canonical(details or {}))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"details: not JSON-serializable: {exc}", field="details") from None
        who = identity.actor_for(actor)
        at = now()
        ev = Evidence(
            gate=gate, passed=passed, value=value, threshold=threshold, details=clean, actor=who, at=at
        )

        def work(conn: Connection) -> Evidence:
            row = queries.version_row(conn, name, version)
            conn.execute(evidence.insert().values(version_id=row.id, **ev.model_dump()))
            self._audit(
                conn,
                at,
                who,
                "evidence.added",
                name,
                version,
                {"gate": gate, "passed": passed, "value": value, "threshold": threshold, "details": clean},
            )
            return ev

        return self.db.transact(work)
