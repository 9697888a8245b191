"""Running the serving app under uvicorn: in the foreground (``govflow serve``) or in a thread."""

from __future__ import annotations

import gc
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from deployments import logs
from deployments.reload_token import TURN_ON
from deployments.serving import create_app
from registry import Registry
from registry.errors import DeployError, InvalidInput


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (0 picks a free port).

    Refuses (``DeployError``) an address that cannot be bound, e.g. a port already in use;
    binding ourselves gives that one clear line instead of uvicorn's log and exit.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto is TCP,
    # and without it Nagle plus delayed ACKs add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DeployError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", reason="bind") from exc
    sock.set_inheritable(True)
    return sock


def _config(app: Any, log_level: str) -> uvicorn.Config:
    # access_log off: RequestLog writes the structured line; a second plain one would double the cost.
    return uvicorn.Config(
        app, access_log=False, log_level=log_level, lifespan="on", timeout_graceful_shutdown=10
    )


def serve(
    name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    poll: float = 2.0,
    registry: Registry | None = None,
    actor: str | None = None,
    log_level: str = "info",
    no_schema: bool = False,
    allow_pickle: bool = False,
    reload_token: str | None = None,
) -> None:
    """Serve ``name@production`` on ``host:port`` until interrupted; request logs go to stdout.

    ``POST /reload`` answers only a caller sending ``reload_token``, and is off without one.
    Refuses to start when ``poll`` is 0 and there is no reload token (nothing would ever follow
    the registry), nothing is in production, the version cannot be loaded safely (pickle and
    joblib need ``allow_pickle`` and the policy's opt-in), it records no input schema and
    ``no_schema`` is off, or the address cannot be bound.
    """
    if poll <= 0 and reload_token is None:
        raise InvalidInput(
            f"--poll: 0 leaves only POST /reload, which is off without a token; give a poll above 0, "
            f"or {TURN_ON}",
            field="poll",
        )
    registry = registry or Registry()
    logs.configure()
    app = create_app(
        registry,
        name,
        poll=poll,
        actor=actor,
        no_schema=no_schema,
        allow_pickle=allow_pickle,
        reload_token=reload_token,
    )
    sock = bind(host, port)
    bound = sock.getsockname()
    logs.log_json(
        logs.EVENTS,
        event="listening",
        model=name,
        url=f"http://{host}:{bound[1]}",
        poll=poll,
        reload="token" if reload_token else "off",
    )
    # Move the imported libraries and the loaded model out of the collector's sight: a full
    # collection then scans request garbage, not ~2*10^5 startup objects (~100 ms, a p99 spike).
    gc.collect()
    gc.freeze()
    try:
        uvicorn.Server(_config(app, log_level)).run(sockets=[sock])
    finally:
        sock.close()
        registry.close()


class ServerThread:
    """uvicorn serving ``app`` in a background thread on loopback; for tests and benchmarks.

    ``with ServerThread(app) as srv: httpx.get(srv.url + "/health")``. Entering waits until
    uvicorn reports started (or refuses with ``DeployError`` after ``start_timeout``).
    """

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.server = uvicorn.Server(_config(app, log_level))
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, start_timeout: float = 10.0) -> ServerThread:
        """Start serving; return once uvicorn has started."""
        self._sock = bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, name=f"uvicorn-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise DeployError(
                    f"uvicorn on {self.url} did not start within {start_timeout}s", reason="start"
                )
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, wait for the thread, release the socket."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
