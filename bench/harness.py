"""Shared plumbing for the server benchmarks: timing, free ports, subprocess servers, databases."""

from __future__ import annotations

import gc
import os
import signal
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

PG_ADMIN = os.environ.get("GOVFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def timings_ms(fn: Callable[[], object], n: int) -> list[float]:
    """Wall time of ``n`` calls of ``fn`` in milliseconds, GC off while timing."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
    finally:
        gc.enable()
    return times


def p50_ms(fn: Callable[[], object], n: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``n`` calls, GC off."""
    return statistics.median(timings_ms(fn, n))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def free_port() -> int:
    """A free TCP port on loopback (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_file(path: Path, size: int) -> Path:
    """Write ``size`` new random bytes to ``path`` (never the same digest twice)."""
    path.write_bytes(os.urandom(size))
    return path


class Server:
    """A server subprocess with its output in a log file; stopped by its own pid only."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path, health: str) -> None:
        self.name, self.log, self.health = name, log, health
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Poll the health URL until it answers 200; fail with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(self.health, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {self.health} in {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) if lines else "(no output)"

    def stop(self) -> None:
        """Stop the server's process group (it may have workers), then close the log."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._log.close()


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """Wait for ``server`` and always stop it."""
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@contextmanager
def pg_database(label: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one bench run, dropped after; yields its host URL part."""
    import psycopg

    name = f"govflow_bench_{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_reachable() -> str | None:
    """None when the bench PostgreSQL answers, else why not."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


ROLES = ("pipeline", "approver", "operator", "reader")


def start_govflow(
    db_url: str, artifact_root: Path, root: Path, stack: ExitStack
) -> tuple[str, dict[str, str]]:
    """``govflow server`` on a free port (stopped by ``stack``); (URL, a token per role)."""
    import sys

    port = free_port()
    token_file = root / "admin.token"
    env = {"GOVFLOW_REGISTRY_URL": db_url, "GOVFLOW_ARTIFACT_ROOT": str(artifact_root), "GOVFLOW_POLICY": ""}
    cmd = [
        sys.executable,
        "-m",
        "govflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--init-admin",
        "bench",
        "--token-file",
        str(token_file),
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}"
    stack.enter_context(running(Server("govflow server", cmd, env, root / "govflow.log", url + "/health")))
    tokens = {"admin": token_file.read_text().strip()}
    from registry import Registry

    admin = Registry(url, token=tokens["admin"])
    try:
        tokens.update({role: admin.add_user(f"bench-{role}", [role]).token for role in ROLES})
    finally:
        admin.close()
    return url, tokens


def clone_rows(
    conn: sa.Connection, table: sa.Table, template: dict[str, Any], changes: list[dict[str, Any]]
) -> None:
    """Insert one copy of ``template`` per entry of ``changes`` (bulk fill, 5,000 rows a batch)."""
    rows = [{**template, **change} for change in changes]
    for i in range(0, len(rows), 5000):
        conn.execute(table.insert(), rows[i : i + 5000])
