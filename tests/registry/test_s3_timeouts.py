"""An S3 endpoint that accepts connections and never answers: with the default settings a put
fails with one clear error naming the endpoint, in bounded time, instead of hanging for minutes."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.artifacts.s3 import S3ArtifactStore
from registry.errors import ArtifactStoreError, InvalidInput

_TUNING = ("GOVFLOW_S3_MAX_ATTEMPTS", "GOVFLOW_S3_CONNECT_TIMEOUT", "GOVFLOW_S3_READ_TIMEOUT")


class SilentServer:
    """A loopback TCP server that accepts every connection, reads nothing and never replies."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            self.accepted.append(conn)  # held open, never answered

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    """The environment points at a silent server, with the store's timeouts left at their defaults."""
    server = SilentServer()
    for name in (*_TUNING, "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "GOVFLOW_S3_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield server
    finally:
        server.close()


def _put_outcome(store: S3ArtifactStore, path: Path, limit: float) -> tuple[BaseException | None, float]:
    """Run ``store.put(path)`` in a worker; return (what it raised, seconds taken) or fail at ``limit``."""
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            store.put(path)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    start = time.monotonic()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    deadline = start + limit
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(0.1)
    elapsed = time.monotonic() - start
    assert not worker.is_alive(), f"put still blocked after {elapsed:.1f}s"
    return outcome[0], elapsed


def test_default_settings_give_up_on_a_silent_endpoint_within_30s(
    silent_endpoint: SilentServer, tmp_path: Path
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    store = S3ArtifactStore.from_uri("s3://govflow-test/hung")
    error, elapsed = _put_outcome(store, model, limit=60)
    assert isinstance(error, ArtifactStoreError), repr(error)
    assert elapsed < 30, f"put took {elapsed:.1f}s to fail"
    message = str(error)
    assert silent_endpoint.url in message and "s3://govflow-test/hung/" in message
    assert "timeout" in message.lower()
    assert error.location is not None and error.location.startswith("s3://govflow-test/hung/")
    # The default retries really happened: more than one connection reached the endpoint.
    assert len(silent_endpoint.accepted) >= 2


def test_environment_overrides_the_timeouts(
    silent_endpoint: SilentServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVFLOW_S3_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("GOVFLOW_S3_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("GOVFLOW_S3_READ_TIMEOUT", "0.5")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    store = S3ArtifactStore.from_uri("s3://govflow-test/hung")
    error, elapsed = _put_outcome(store, model, limit=30)
    assert isinstance(error, ArtifactStoreError), repr(error)
    assert elapsed < 4, f"one 0.5 s attempt took {elapsed:.1f}s"
    assert len(silent_endpoint.accepted) == 1


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "soon"])
@pytest.mark.parametrize("name", _TUNING)
def test_bad_tuning_values_are_refused_naming_the_variable(
    silent_endpoint: SilentServer, monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(InvalidInput, match=name) as info:
        S3ArtifactStore.from_uri("s3://govflow-test/hung")
    assert info.value.field == name
