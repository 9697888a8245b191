"""Fixtures for the serving tests: trained pipelines, a SQLite registry, servers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployments.support import MODEL, POLL, TOKEN, train


@pytest.fixture(autouse=True)
def no_reload_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload token exported in the shell must not change what these tests see."""
    monkeypatch.delenv("GOVFLOW_SERVE_TOKEN", raising=False)
    monkeypatch.delenv("GOVFLOW_SERVE_TOKEN_FILE", raising=False)


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
    """Start ``create_app(registry, MODEL, ...)`` under real uvicorn on loopback; stopped after.

    ``POST /reload`` takes ``support.AUTH`` unless the test gives its own ``reload_token``.
    """
    from deployments.server import ServerThread
    from deployments.serving import create_app

    started: list[ServerThread] = []

    def start(reg: Any, **kwargs: Any) -> ServerThread:
        kwargs.setdefault("poll", POLL)
        token = kwargs.pop("reload_token", TOKEN)
        if token is not None:  # None is create_app's own default: /reload off
            kwargs["reload_token"] = token
        srv = ServerThread(create_app(reg, MODEL, **kwargs)).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
