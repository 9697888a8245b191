"""Fixtures for the identity tests: a registry with user administration, on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import Policy, Registry
from registry.auth.admin import UserAdmin
from tests.fixtures.backends import create_pg_database, drop_pg_database

ADMIN = ("root", frozenset({"admin"}))


class UserRegistry(Registry, UserAdmin):
    """The registry with user administration mixed in (as the server's registry has it)."""


def open_user_registry(url: str, root: Path) -> UserRegistry:
    return UserRegistry(url=url, artifact_root=str(root / "artifacts"), policy=Policy())


@pytest.fixture
def users_reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserRegistry]:
    """A fresh SQLite registry; embedded callers act as ``root``."""
    monkeypatch.setenv("GOVFLOW_ACTOR", "root")
    reg = open_user_registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_users_reg(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[UserRegistry]:
    """A fresh embedded registry on each database (SQLite and PostgreSQL)."""
    monkeypatch.setenv("GOVFLOW_ACTOR", "root")
    if request.param == "sqlite":
        url, admin = f"sqlite:///{tmp_path / 'registry.db'}", None
    else:
        admin = request.getfixturevalue("pg_server")
        url = create_pg_database(admin)
    reg = open_user_registry(url, tmp_path)
    try:
        yield reg
    finally:
        reg.close()
        if admin is not None:
            drop_pg_database(admin, url)
