"""Helpers for the server tests: role tokens, clients, and a fingerprint of every table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass
class InProcess:
    """The server's app on an SQLite registry, called in-process; a token per role."""

    registry: Any
    authenticator: Any
    client: Any
    tokens: dict[str, str]

    def app(self) -> Any:
        """A second app on the same registry, for a test to add routes to."""
        from registry.service import create_app

        return create_app(self.registry, self.authenticator)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """One app per module: no server process, no network; ``tokens[role]`` for every role."""
    from starlette.testclient import TestClient

    from registry import Registry, identity
    from registry.auth.authenticate import Authenticator
    from registry.policy import Policy
    from registry.service import create_app

    tmp = tmp_path_factory.mktemp("in-process")
    reg = Registry(
        url=f"sqlite:///{tmp / 'r.db'}",
        artifact_root=str(tmp / "artifacts"),
        default_policy=Policy(authenticated_approvals=True),
    )
    reg.policy_info()  # seeded now, so a read through the app writes nothing
    tokens = {role: reg.add_user(f"matrix-{role}", [role]).token for role in identity.ROLES}
    authenticator = Authenticator(reg.db)
    with TestClient(create_app(reg, authenticator), raise_server_exceptions=False) as client:
        yield InProcess(registry=reg, authenticator=authenticator, client=client, tokens=tokens)
    reg.close()
