"""The processes of a local cluster: start, wait for, kill and stop them, and clean up after them.

Every process starts in its own session (its own process group), logs to a file in one folder,
and is stopped with its whole group, so a worker takes its flow-run subprocesses with it, as a
lost machine would. ``Supervisor.close`` runs on exit, on SIGTERM and on failure: no process is
left behind and every database made for the cluster is dropped.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PG_ADMIN = os.environ.get("GOVFLOW_CLUSTER_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


class ClusterError(RuntimeError):
    """A cluster process did not start, or a step of the story did not happen in time."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``condition`` until it returns something truthy; ``ClusterError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- databases ------------------------------------------------------------------------------


def create_database(prefix: str) -> str:
    """Create a fresh PostgreSQL database; return its name."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    """Drop a database made by ``create_database`` (its connections are closed by force)."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(name: str, driver: str) -> str:
    """``postgresql+<driver>://…/<name>`` on the server of ``PG_ADMIN``."""
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", f"postgresql+{driver}://", 1)
    return f"{base}/{name}"


# --- processes ------------------------------------------------------------------------------


@dataclass
class Service:
    """One started process and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str | None = None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def process_tree(root: int) -> list[int]:
    """``root`` and every process descending from it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def processes_with_env(name: str, values: Iterable[str]) -> dict[str, list[int]]:
    """Live processes whose environment sets ``name`` to one of ``values``: value -> pids.

    The process worker gives each flow-run subprocess ``PREFECT__FLOW_RUN_ID``, so this counts
    the processes that hold a flow run, whoever started them.
    """
    wanted = set(values)
    found: dict[str, list[int]] = {v: [] for v in wanted}
    prefix = f"{name}=".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":  # a zombie holds nothing
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                value = item[len(prefix) :].decode(errors="replace")
                if value in wanted:
                    found[value].append(int(entry.name))
                break
    return found


@dataclass
class Supervisor:
    """Starts the cluster's processes and owns their cleanup."""

    folder: Path
    services: dict[str, Service] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)
    stop_timeout: float = 10  # seconds between SIGTERM and SIGKILL on close
    _closed: bool = False

    def __post_init__(self) -> None:
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)

    def database(self, prefix: str) -> str:
        """A fresh database, dropped by ``close``."""
        name = create_database(prefix)
        self.databases.append(name)
        return name

    def start(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
        url: str | None = None,
    ) -> Service:
        """Start ``argv`` in its own session, output appended to ``logs/<name>.log``."""
        if self._closed:
            raise ClusterError("the cluster is closed")
        old = self.services.get(name)
        if old is not None and old.alive:
            raise ClusterError(f"{name} is already running (pid {old.proc.pid})")
        log = self.folder / "logs" / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        service = Service(name=name, proc=proc, log=log, url=url)
        self.services[name] = service
        return service

    def wait_http(self, service: Service, path: str, timeout: float = 90) -> None:
        """Wait until ``service.url + path`` answers 200; fail early if the process exits."""

        def up() -> bool:
            if not service.alive:
                raise ClusterError(
                    f"{service.name} exited with {service.proc.returncode}:\n{tail(service.log)}"
                )
            try:
                return httpx.get(f"{service.url}{path}", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(up, timeout, f"{service.name} at {service.url}{path}", interval=0.3)
        except ClusterError as exc:
            raise ClusterError(f"{exc}\n{tail(service.log)}") from None

    def kill(self, name: str) -> list[int]:
        """SIGKILL the service's whole process group, as a lost machine; return the pids killed."""
        service = self.services[name]
        pids = process_tree(service.proc.pid)
        try:
            os.killpg(service.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in pids:  # anything that left the group still belonged to this machine
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        service.proc.wait(timeout=10)
        wait_until(
            lambda: not any(alive(pid) for pid in pids), 10, f"{name}'s processes to die", interval=0.05
        )
        return pids

    def stop(self, name: str, timeout: float = 15) -> None:
        """SIGTERM the service's group, SIGKILL it after ``timeout`` seconds."""
        service = self.services.get(name)
        if service is None or service.proc.returncode is not None:
            return
        try:
            os.killpg(service.proc.pid, signal.SIGTERM)
            service.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(name)
        except ProcessLookupError:
            service.proc.wait(timeout=timeout)
        # The group may outlive its leader (a flow-run subprocess): end it too.
        try:
            os.killpg(service.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """Stop every service (workers first, servers last) and drop the cluster's databases."""
        if self._closed:
            return
        self._closed = True
        for name in sorted(self.services, key=_stop_order):
            try:
                self.stop(name, timeout=self.stop_timeout)
            except Exception as exc:  # noqa: BLE001 - cleanup goes on; say what failed
                print(f"cluster cleanup: stopping {name}: {exc}", file=sys.stderr)
        for db in self.databases:
            try:
                drop_database(db)
            except Exception as exc:  # noqa: BLE001 - cleanup goes on; say what failed
                print(f"cluster cleanup: dropping database {db}: {exc}", file=sys.stderr)
        self.databases.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop_order(name: str) -> int:
    # Workers and their flow runs first, then the servers they talk to, the store last.
    return 0 if name.startswith("worker") else 2 if name == "s3" else 1


def exit_on_sigterm() -> None:
    """Make SIGTERM (a CI timeout, ``kill``) leave through the same cleanup as a normal exit."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
