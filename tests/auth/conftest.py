"""Fixtures for the identity tests: a registry with user administration, on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import Policy, Registry
from registry.auth.admin import UserAdmin

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


@pytest.fixture
def any_users_reg(backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserRegistry]:
    """A fresh registry on each backend (SQLite and PostgreSQL)."""
    monkeypatch.setenv("GOVFLOW_ACTOR", "root")
    reg = open_user_registry(backend_url, tmp_path)
    try:
        yield reg
    finally:
        reg.close()
