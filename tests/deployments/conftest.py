"""Fixtures for the serving tests: trained pipelines, a SQLite registry, servers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployments.support import MODEL, POLL, train


@pytest.fixture(scope="session")
def estimators() -> tuple[Any, Any]:
    """(model A, model B): B predicts the opposite class of A on (almost) every row."""
    return train(), train(flip=True)


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Iterator[Any]:
    """A Registry on a fresh SQLite database with local artifacts (backend-independent tests)."""
    from registry import Policy, Registry

    reg = Registry(
        url=f"sqlite:///{tmp_path / 'registry.db'}",
        artifact_root=str(tmp_path / "artifacts"),
        policy=Policy(),
    )
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def serve_app() -> Iterator[Callable[..., Any]]:
    """Start ``create_app(registry, MODEL, ...)`` under real uvicorn on loopback; stopped after."""
    from deployments.server import ServerThread
    from deployments.serving import create_app

    started: list[ServerThread] = []

    def start(reg: Any, **kwargs: Any) -> ServerThread:
        kwargs.setdefault("poll", POLL)
        srv = ServerThread(create_app(reg, MODEL, **kwargs)).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
