"""A team's set-up on one machine: Prefect on PostgreSQL, process workers, the registry server, S3.

``Team.start()`` brings up, each as its own process:
- an S3 endpoint (moto's standalone server) with a bucket for the registry's artifacts;
- the registry server (``govflow server``) on a fresh PostgreSQL database, its admin made with
  ``--init-admin``, then a pipeline identity, an operator and two approvers, each with a token
  in a 0600 file;
- a Prefect server (``prefect server start``, UI on) on another fresh PostgreSQL database;
- the ``govflow-process`` work pool, the project's deployments (``prefect deploy --all`` from a
  copy of the project, as a worker image would hold it) and process workers ``w1`` and ``w2``.
Every command run is kept with its exit code (``Team.commands``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from flows.cluster.processes import ClusterError, Supervisor, database_url, free_port, wait_until
from flows.demo_data import make_period

ROOT = Path(__file__).resolve().parents[2]
POOL = "govflow-process"
BUCKET = "govflow-cluster"
PACKAGES = ("flows", "checks", "registry", "deployments", "govflow")
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "cluster",
    "AWS_SECRET_ACCESS_KEY": "cluster",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# name -> roles. The pipeline promotes and deploys what approvers approved, so it is an operator too.
USERS = {
    "ml-pipeline": ("pipeline", "operator"),
    "ops-oncall": ("operator",),
    "risk-anna": ("approver",),
    "risk-ben": ("approver",),
}
PIPELINE, OPERATOR, APPROVERS = "ml-pipeline", "ops-oncall", ("risk-anna", "risk-ben")


@dataclass
class Command:
    """A command the set-up or the story ran, and how it ended."""

    label: str
    code: int


@dataclass
class Team:
    """The cluster's processes, addresses, identities and per-model pipeline configs."""

    folder: Path
    models: list[str]
    rows: int = 1200
    workers: tuple[str, ...] = ("w1", "w2")
    sup: Supervisor = field(init=False)
    commands: list[Command] = field(default_factory=list)
    prefect_url: str = ""
    registry_url: str = ""
    s3_url: str = ""
    configs: dict[str, Path] = field(default_factory=dict)
    drifted: dict[str, Path] = field(default_factory=dict)
    later: dict[str, Path] = field(default_factory=dict)
    recent: dict[str, Path] = field(default_factory=dict)
    started: dict[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sup = Supervisor(self.folder)
        self.tokens = self.folder / "tokens"
        self.project = self.folder / "project"

    # --- environments ---------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"{self.prefect_url}/api"

    def env(self, user: str | None = None, **extra: str) -> dict[str, str]:
        """The environment of a client process: Prefect API, registry URL, ``user``'s token file."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVFLOW_", "PREFECT_", "AWS_"))}
        env.update(
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
            PREFECT_HOME=str(self.folder / "prefect-home"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_CLI_PROMPT="false",
            GOVFLOW_REGISTRY_URL=self.registry_url,
        )
        if user is not None:
            env["GOVFLOW_TOKEN_FILE"] = str(self.tokens / f"{user}.token")
        env.update(extra)
        return env

    def worker_env(self) -> dict[str, str]:
        """What a worker (and every flow run it starts) sees: the pipeline's identity."""
        return self.env(
            PIPELINE,
            PREFECT_WORKER_QUERY_SECONDS="2",
            PREFECT_WORKER_PREFETCH_SECONDS="5",
            PREFECT_LOGGING_LEVEL="INFO",
            GOVFLOW_CARDS=str(self.folder / "cards"),
            GOVFLOW_CODE_COMMIT=code_commit(),
        )

    # --- commands ---------------------------------------------------------------------------

    def run(
        self, label: str, argv: list[str], env: dict[str, str], *, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to its end, keeping its exit code; ``ClusterError`` when it fails and ``check``."""
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        self.commands.append(Command(label, proc.returncode))
        if check and proc.returncode != 0:
            raise ClusterError(
                f"`{label}` exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
            )
        return proc

    def govflow(self, user: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``govflow ARGS`` as ``user`` (its token file), against the registry server."""
        label = f"govflow {' '.join(args)}  (as {user})"
        return self.run(label, [sys.executable, "-m", "govflow", *args], self.env(user), check=check)

    def prefect(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``prefect ARGS`` from the project copy, with the pipeline's environment."""
        label = f"prefect {' '.join(args)}"
        argv = [sys.executable, "-m", "prefect", *args]
        return self.run(label, argv, self.worker_env(), cwd=self.project, check=check)

    # --- start ------------------------------------------------------------------------------

    def start(self) -> Team:
        """Bring the whole set-up up; on any failure everything started so far is stopped."""
        try:
            self._servers()
            self._users()
            self._data()
            self._deploy()
            for name in self.workers:
                self.start_worker(name)
            self.wait_workers(self.workers)
        except BaseException:
            self.close()
            raise
        return self

    def _servers(self) -> None:
        """S3, the registry server and Prefect, started together, then waited for."""
        sup = self.sup
        s3_port, reg_port, prefect_port = free_port(), free_port(), free_port()
        self.s3_url = f"http://127.0.0.1:{s3_port}"
        self.registry_url = f"http://127.0.0.1:{reg_port}"
        self.prefect_url = f"http://127.0.0.1:{prefect_port}"
        moto = str(Path(sys.executable).parent / "moto_server")
        s3 = sup.start("s3", [moto, "-H", "127.0.0.1", "-p", str(s3_port)], self.env(), url=self.s3_url)

        registry_db = sup.database("govflow_cluster_registry")
        self.tokens.mkdir(mode=0o700, exist_ok=True)
        reg_env = self.env(
            **S3_KEYS,
            GOVFLOW_REGISTRY_URL=database_url(registry_db, "psycopg"),
            GOVFLOW_ARTIFACT_ROOT=f"s3://{BUCKET}/registry",
            GOVFLOW_S3_ENDPOINT_URL=self.s3_url,
        )
        argv = [sys.executable, "-m", "govflow", "server", "--port", str(reg_port), "--log-level", "warning"]
        argv += ["--init-admin", "admin", "--token-file", str(self.tokens / "admin.token")]

        prefect_db = sup.database("govflow_cluster_prefect")
        prefect_env = self.env(
            PREFECT_HOME=str(self.folder / "prefect-server-home"),
            PREFECT_API_DATABASE_CONNECTION_URL=database_url(prefect_db, "asyncpg"),
            PREFECT_UI_API_URL=self.api_url,  # the UI calls this, not port 4200
            PREFECT_SERVER_UI_ENABLED="true",
            PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        )
        prefect_argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        prefect = sup.start("prefect-server", [*prefect_argv, "--port", str(prefect_port)], prefect_env)
        prefect.url = self.prefect_url

        sup.wait_http(s3, "/", timeout=30)
        import boto3

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.s3_url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=BUCKET)
        registry = sup.start("registry-server", argv, reg_env, url=self.registry_url)
        self.commands.append(Command("govflow server --init-admin admin --token-file … (started)", 0))
        sup.wait_http(registry, "/health", timeout=60)
        sup.wait_http(prefect, "/api/health", timeout=150)

    def _users(self) -> None:
        """The pipeline identity, an operator and two approvers, each token in its own 0600 file."""
        for name, roles in USERS.items():
            role_args = [arg for role in roles for arg in ("--role", role)]
            proc = self.govflow("admin", "users", "add", name, *role_args, "--json")
            write_secret(self.tokens / f"{name}.token", json.loads(proc.stdout)["token"])

    def _data(self) -> None:
        """Per model: train/eval data of two periods and a drifted period, with its own seeds."""
        example = yaml.safe_load((ROOT / "flows" / "examples" / "credit-risk.yaml").read_text())
        for k, model in enumerate(self.models):
            folder = self.folder / "data" / model
            folder.mkdir(parents=True, exist_ok=True)
            seed = 100 * (k + 1)
            frames = {
                "base_train": make_period(self.rows, seed + 1),
                "base_eval": make_period(self.rows // 3, seed + 2),
                "later_train": make_period(self.rows, seed + 3, shift=0.08),
                "later_eval": make_period(self.rows // 3, seed + 4, shift=0.08),
                "drifted": make_period(self.rows // 2, seed + 5, shift=0.08, drift=True),
                "recent": make_period(self.rows // 2, seed + 6, shift=0.08),
            }
            paths = {}
            for name, frame in frames.items():
                paths[name] = folder / f"{name}.csv"
                frame.to_csv(paths[name], index=False)
            for period in ("base", "later"):
                cfg = dict(example, model_name=model)
                cfg["data"] = {"train": str(paths[f"{period}_train"]), "eval": str(paths[f"{period}_eval"])}
                cfg["contract"] = dict(example["contract"], min_rows=min(500, self.rows // 2))
                cfg.update(approval_poll=1, approval_timeout=1800, monitor={"source": str(paths["recent"])})
                cfg["deploy"] = {"kind": "manifest", "path": str(self.folder / "releases" / f"{model}.json")}
                path = self.folder / "configs" / f"{model}-{period}.yaml"
                path.parent.mkdir(exist_ok=True)
                path.write_text(yaml.safe_dump(cfg, sort_keys=False))
                if period == "base":
                    self.configs[model] = path
                else:
                    self.later[model] = path
            self.drifted[model] = paths["drifted"]
            self.recent[model] = paths["recent"]

    def _deploy(self) -> None:
        """Copy the project as a worker image would hold it, create the pool, deploy everything."""
        if self.project.exists():
            shutil.rmtree(self.project)
        self.project.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".govflow", "releases", "data")
        for package in PACKAGES:
            shutil.copytree(ROOT / package, self.project / package, ignore=ignore)
        shutil.copy(ROOT / "prefect.yaml", self.project / "prefect.yaml")
        self.prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
        # prefect.yaml copies the deployer's GOVFLOW_* into each deployment; an unset one would
        # stay the literal "{{ $NAME }}", so every one it names is set, empty for the default.
        names = re.findall(r"\{\{\s*\$(GOVFLOW_[A-Z0-9_]+)\s*\}\}", (ROOT / "prefect.yaml").read_text())
        env = {name: "" for name in names} | self.worker_env()
        self.run(
            "prefect deploy --all",
            [sys.executable, "-m", "prefect", "deploy", "--all"],
            env,
            cwd=self.project,
        )
        # Rollbacks run as the operator: the deployment's own environment names its token file.
        self.set_deployment_env("rollback", GOVFLOW_TOKEN_FILE=str(self.tokens / f"{OPERATOR}.token"))
        # The example config's schedules would act on this registry's models mid-story.
        self.pause_schedules("retrain", "monitor")

    def pause_schedules(self, *names: str) -> None:
        """Turn the schedules of these deployments off (their triggers and manual runs stay)."""
        with self.client() as client:
            for name in names:
                dep = client.read_deployment_by_name(f"{name}/{name}")
                for schedule in client.read_deployment_schedules(dep.id):
                    client.update_deployment_schedule(dep.id, schedule.id, active=False)

    def set_deployment_env(self, name: str, **env: str) -> None:
        """Add ``env`` to a deployment's ``job_variables.env``, keeping what prefect.yaml set."""
        from prefect.client.schemas.actions import DeploymentUpdate

        with self.client() as client:
            dep = client.read_deployment_by_name(f"{name}/{name}")
            variables: dict[str, Any] = dict(dep.job_variables or {})
            variables["env"] = {**(variables.get("env") or {}), **env}
            client.update_deployment(dep.id, DeploymentUpdate(job_variables=variables))

    # --- workers ----------------------------------------------------------------------------

    def start_worker(self, name: str) -> None:
        """``prefect worker start --pool govflow-process --name NAME`` as its own process."""
        argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", name]
        self.started[name] = datetime.now(UTC)
        self.sup.start(f"worker-{name}", argv, self.worker_env(), cwd=self.project)
        self.commands.append(Command(f"prefect worker start --pool {POOL} --name {name} (started)", 0))

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL the worker and every process it started (its flow runs), as a lost machine."""
        pids = self.sup.kill(f"worker-{name}")
        self.commands.append(Command(f"kill -9 worker {name} (pids {', '.join(map(str, pids))})", -9))
        return pids

    def worker_pids(self) -> dict[str, int]:
        """Live workers: name -> pid."""
        return {
            n.removeprefix("worker-"): s.proc.pid
            for n, s in self.sup.services.items()
            if n.startswith("worker-") and s.alive
        }

    def wait_workers(self, names: tuple[str, ...] | list[str], timeout: float = 90) -> None:
        """Wait until every worker in ``names`` has sent the pool a heartbeat since it was started.

        A killed worker's name stays "online" until its heartbeat goes stale, so the status alone
        would not show that the new process is up.
        """

        def online() -> bool:
            for name in names:
                if not self.sup.services[f"worker-{name}"].alive:
                    raise ClusterError(f"worker {name} exited: see {self.sup.services[f'worker-{name}'].log}")
            with self.client() as client:
                seen = {w.name: w.last_heartbeat_time for w in client.read_workers_for_work_pool(POOL)}
            return all(seen.get(n) is not None and seen[n] > self.started[n] for n in names)

        wait_until(online, timeout, f"workers {', '.join(names)} online", interval=0.5)

    # --- clients ----------------------------------------------------------------------------

    def client(self) -> Any:
        """A synchronous Prefect client on this cluster's API (whatever this process's settings say)."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def registry(self, user: str = "admin") -> Any:
        """A registry client on the server as ``user``."""
        from registry.remote import RemoteRegistry

        return RemoteRegistry(self.registry_url, token=(self.tokens / f"{user}.token").read_text().strip())

    def close(self) -> None:
        """Stop every process and drop both databases."""
        self.sup.close()


def write_secret(path: Path, text: str) -> None:
    """Write a token to a new file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")


def code_commit() -> str:
    """The commit of this checkout, as an image build would bake into GOVFLOW_CODE_COMMIT."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "0000000"
    except OSError:
        return "0000000"
