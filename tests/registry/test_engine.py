"""The PostgreSQL engine: dead connections are replaced, and a snapshot cannot write."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from registry import Registry
from registry.errors import StorageError

pytestmark = pytest.mark.embedded_only("kills the server-side connections of its own database")


def _pg(registry: Registry) -> None:
    if registry.db.dialect != "postgresql":
        pytest.skip("PostgreSQL connection handling")


def _kill_backends(url: str) -> int:
    name = url.rsplit("/", 1)[1]
    admin = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            # Wait (up to 5 s) until each backend has exited, so the next call meets a dead connection.
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_every_call_survives_the_server_closing_its_connections(registry: Registry, artifact: Path) -> None:
    _pg(registry)
    registry.register("m", artifact, actor="alice")
    registry.resolve("m/1")
    with registry.db.snapshot() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert _kill_backends(registry.url) >= 1
    # Writes, lookups, reads and snapshots each meet a dead pooled connection first.
    artifact.write_bytes(b"second model")
    assert registry.register("m", artifact, actor="alice").version == 2
    assert _kill_backends(registry.url) >= 1
    assert registry.resolve("m/2").version == 2
    assert _kill_backends(registry.url) >= 1
    assert registry.get("m/1").version == 1
    assert _kill_backends(registry.url) >= 1
    assert registry.verify_audit().ok


def test_a_snapshot_refuses_writes(registry: Registry, artifact: Path) -> None:
    _pg(registry)
    registry.register("m", artifact, actor="alice")
    with pytest.raises((sa.exc.DBAPIError, StorageError), match="read-only"):
        with registry.db.snapshot() as conn:
            conn.execute(sa.text("UPDATE models SET description = 'edited'"))
    assert registry.get("m/1").version == 1 and registry.models()[0].description is None
