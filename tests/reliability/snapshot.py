"""A registry in a known state, and a fingerprint of everything its database holds."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from registry import Registry
from tests.reliability.api_calls import SEED_MODEL, Paths


def seed_registry(reg: Registry, paths: Paths) -> None:
    """churn/1 in production (approved), churn/2 in staging, churn/3 in development."""
    reg.register(SEED_MODEL, paths.fresh_file(), actor="alice", metrics={"auc": 0.8})
    reg.transition(SEED_MODEL, 1, "staging", actor="alice")
    reg.approve(SEED_MODEL, 1, actor="bob", reason="ok")
    reg.transition(SEED_MODEL, 1, "production", actor="alice")
    reg.register(SEED_MODEL, paths.fresh_file(), actor="alice", metrics={"auc": 0.81})
    reg.transition(SEED_MODEL, 2, "staging", actor="alice")
    reg.register(SEED_MODEL, paths.fresh_file(), actor="alice")
    reg.set_alias(SEED_MODEL, "champion", 1, actor="alice")
    reg.add_evidence(SEED_MODEL, 1, gate="accuracy", passed=True, value=0.8, threshold=0.7, actor="alice")


def snapshot(reg: Registry) -> dict[str, Any]:
    """Row count and content digest of every table (audit head included), to prove "unchanged".

    Tables are discovered from the database, so new state tables are covered without edits.
    """
    out: dict[str, Any] = {}
    with reg.db.read() as conn:
        for table in sorted(sa.inspect(conn).get_table_names()):
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            digest = hashlib.sha256("\n".join(sorted(repr(tuple(r)) for r in rows)).encode()).hexdigest()
            out[table] = (len(rows), digest[:16])
    return out
