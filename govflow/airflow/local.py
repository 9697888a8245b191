"""Run a real Airflow 3 (api-server, scheduler, dag-processor) on loopback, for tests and demos."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from govflow.airflow.rest import AirflowClient, AirflowError

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
ROLES = ("admin", "op", "user", "viewer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _airflow_bin() -> str:
    """The ``airflow`` script next to the running interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("airflow")
    return str(beside) if beside.exists() else (shutil.which("airflow") or "airflow")


def _pg_connect():
    import psycopg

    return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)


def _pg_create(name: str) -> bool:
    """Create database ``name`` on the local PostgreSQL; False when that server cannot be reached."""
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with _pg_connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return False
    return True


def _pg_drop(name: str) -> None:
    with _pg_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class LocalAirflow:
    """Airflow on 127.0.0.1 in ``home``: ``with LocalAirflow(...) as af: af.client("alice")``.

    ``users`` maps a user name to a SimpleAuthManager role. The metadata database is a fresh
    PostgreSQL database (dropped on exit) unless ``database_url="sqlite"`` is given or PostgreSQL is
    unreachable; any other ``database_url`` is used as it is and left alone on exit.
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        users: dict[str, str],
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        triggerer: bool = False,
        start_timeout: float = 120,
    ) -> None:
        for user, role in users.items():
            if role not in ROLES:
                raise ValueError(f"user {user!r}: role {role!r} is not one of {', '.join(ROLES)}")
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.users = dict(users)
        self.passwords = {user: secrets.token_urlsafe(12) for user in users}
        self.extra_env = dict(env or {})
        self.triggerer = triggerer
        self.start_timeout = start_timeout
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._database_url = database_url
        self._created_db: str | None = None
        self.database_url = ""
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list[IO[bytes]] = []
        self.env: dict[str, str] = {}

    # --- configuration --------------------------------------------------------------------

    def _pick_database(self) -> str:
        if self._database_url and self._database_url != "sqlite":
            return self._database_url
        if self._database_url is None:
            name = f"airflow_{secrets.token_hex(6)}"
            if _pg_create(name):
                self._created_db = name
                return PG_URL.format(name=name)
        return f"sqlite:///{self.home / 'airflow.db'}"

    def _build_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(self.extra_env)
        cfg = {
            "CORE__DAGS_FOLDER": str(self.dags_folder),
            "CORE__LOAD_EXAMPLES": "False",
            "CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "CORE__EXECUTOR": "LocalExecutor",
            "CORE__PARALLELISM": "8",
            "CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in self.users.items()),
            "CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "API__BASE_URL": self.base_url,
            "API__HOST": "127.0.0.1",
            "API__PORT": str(self.port),
            "API__WORKERS": "1",
            "API__SECRET_KEY": secrets.token_hex(16),
            "API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            "SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            # the HITL response-timeout sweep runs on this interval
            "SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1",
            # a task's supervisor waits up to this long for its sockets after the task exits; at the
            # default 5 s a parked HITL task is reported to the scheduler seconds late (see wait_hitl)
            "WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "2",
            "DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            "DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "DAG_PROCESSOR__PRINT_STATS_INTERVAL": "3600",
            # two instances side by side must not fight over the default log-server ports
            "LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
        }
        env.update({f"AIRFLOW__{k}": v for k, v in cfg.items()})
        env["AIRFLOW_HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"  # wait_hitl reads the scheduler's log as it is written
        return env

    # --- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> LocalAirflow:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Migrate the database and start the processes; returns once the API answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps(self.passwords))
        try:
            self.database_url = self._pick_database()
            self.env = self._build_env()
            migrate = subprocess.run(
                [_airflow_bin(), "db", "migrate"],
                env=self.env,
                cwd=self.home,
                capture_output=True,
                text=True,
                timeout=300,
            )
            (self.home / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
            if migrate.returncode != 0:
                tail = (migrate.stdout + migrate.stderr)[-2000:]
                raise AirflowError("db migrate", None, f"exit {migrate.returncode}: {tail}")
            commands = {
                "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port)],
                "scheduler": ["scheduler"],
                "dag-processor": ["dag-processor"],
            }
            if self.triggerer:
                commands["triggerer"] = ["triggerer"]
            for name, args in commands.items():
                self._spawn(name, args)
            self._wait_api()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.home / f"{name}.log", "ab")
        self._logs.append(log)
        self.processes[name] = subprocess.Popen(
            [_airflow_bin(), *args],
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise AirflowError(f"start {name}", None, f"exited {proc.returncode}: {self.log_tail(name)}")

    def _wait_api(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AirflowError("start api-server", None, f"no answer in {self.start_timeout:g}s")

    def stop(self) -> None:
        """Stop every process group (SIGTERM, then SIGKILL) and drop the database this created."""
        for proc in self.processes.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.processes.values():
            # the group can outlive its leader (task supervisors, gunicorn workers)
            _signal_group(proc, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(5)
        self.processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._created_db:
            _pg_drop(self._created_db)
            self._created_db = None

    # --- use ------------------------------------------------------------------------------

    def client(self, user: str) -> AirflowClient:
        """A REST client logged in as ``user`` (one of ``users``)."""
        if user not in self.passwords:
            raise ValueError(f"user {user!r} is not one of {sorted(self.passwords)}")
        return AirflowClient(self.base_url, user, self.passwords[user])

    def wait_dag(self, dag_id: str, timeout: float = 60, user: str | None = None) -> dict[str, Any]:
        """Poll until the dag-processor has parsed ``dag_id``; returns the API's view of it."""
        who = user or next(iter(self.users))
        deadline = time.monotonic() + timeout
        last = ""
        with self.client(who) as api:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    return api._get(f"dag {dag_id}", f"/dags/{dag_id}")
                except AirflowError as exc:
                    if exc.status != 404:
                        raise
                    last = exc.answer
                time.sleep(0.5)
        raise AirflowError(f"wait for dag {dag_id}", 404, f"not parsed in {timeout:g}s: {last}")

    def wait_hitl(
        self, api: AirflowClient, dag_id: str, run_id: str, task_id: str, timeout: float = 90
    ) -> dict[str, Any]:
        """Wait until ``task_id`` asks for input and the scheduler has seen it park; returns the request.

        Airflow 3.3.2 fails a HITL task answered before the scheduler has read the executor event of
        its parking (the resumed try shares the key of the parked one and the late event drops it from
        the executor). A person never answers that fast; a test does, so it waits for the scheduler's
        "TaskInstance Finished ... state=awaiting_input" line first. Returns at once, too, when the task
        has already left awaiting_input (answered or timed out meanwhile).
        """
        deadline = time.monotonic() + timeout
        api.wait_task(dag_id, run_id, task_id, {"awaiting_input"}, timeout)
        detail = next(d for d in api.hitl_details(dag_id, run_id) if d["task_instance"]["task_id"] == task_id)
        mark = f"ti_id={detail['task_instance']['id']},"
        while time.monotonic() < deadline:
            self._check_alive()
            for line in self.log_tail("scheduler", 2_000_000).splitlines():
                if "TaskInstance Finished" in line and mark in line and "state=awaiting_input," in line:
                    return detail
            if api.task_states(dag_id, run_id).get(task_id) != "awaiting_input":
                return detail
            time.sleep(0.3)
        raise AirflowError(f"wait for {dag_id}/{run_id}/{task_id} to park", None, f"not seen in {timeout:g}s")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """The end of one process's log (api-server, scheduler, dag-processor, triggerer)."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
