"""Helpers for the server tests: role tokens, clients, and a fingerprint of every table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

TABLES = (
    "models",
    "versions",
    "aliases",
    "alias_history",
    "stage_history",
    "approvals",
    "evidence",
    "audit_events",
    "policies",
    "policy_history",
    "waivers",
    "users",
    "approval_codes",
)


def snapshot(harness: Any) -> dict[str, Any]:
    """Row counts of every state table plus the chain head: equal before and after = nothing written."""
    with harness.registry.db.read() as conn:
        out: dict[str, Any] = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}
        out["head"] = conn.execute(sa.text("SELECT max(seq) FROM audit_events")).scalar()
        out["user_rows"] = conn.execute(
            sa.text("SELECT name, token_id, revoked_at FROM users ORDER BY name")
        ).all()
    return out


@pytest.fixture
def unchanged(registry_server: Any) -> Callable[..., Any]:
    """``with unchanged(): ...`` asserts the block wrote nothing (rows, audit head, users)."""
    from contextlib import contextmanager

    @contextmanager
    def check() -> Any:
        before = snapshot(registry_server)
        yield
        assert snapshot(registry_server) == before

    return check


@pytest.fixture
def team(registry_server: Any, tmp_path: Any) -> dict[str, Any]:
    """churn/1 registered by bob (pipeline) and staged, plus a client per role."""
    h = registry_server
    clients = {
        "admin": h.client(),
        "bob": h.client(h.token("pipeline", name="bob")),
        "alice": h.client(h.token("approver", name="alice")),
        "olga": h.client(h.token("operator", name="olga")),
        "rita": h.client(h.token("reader", name="rita")),
    }
    path = tmp_path / "model.bin"
    path.write_bytes(b"churn model bytes")
    clients["bob"].register("churn", path, metrics={"auc": 0.91})
    clients["bob"].transition("churn", 1, "staging")
    clients["path"] = path
    return clients
