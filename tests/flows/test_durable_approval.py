"""A deployed retrain suspends for approval: no process waits, a worker restart loses nothing.

Real parts: the Prefect test server, `prefect deploy` of a project copy, process workers started
and SIGKILLed as subprocesses, `govflow approve` / `govflow reconcile` as subprocesses.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from registry import Policy, Registry, Stage, waiting
from tests.fixtures.prefect import prefect_deploy_all, wait_for
from tests.flows.conftest import PIPELINE_ACTOR, with_config

ROOT = Path(__file__).resolve().parents[2]
POOL = "govflow-durable"
MODEL = "credit-risk"


@pytest.fixture(scope="module")
def project(prefect_api: str, tmp_path_factory) -> Path:
    """A copy of the flows with one deployment of retrain on a process pool."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    folder = tmp_path_factory.mktemp("durable-project")
    shutil.copytree(ROOT / "flows", folder / "flows", ignore=shutil.ignore_patterns("__pycache__", "data"))
    spec = {
        "name": "durable",
        "prefect-version": "3.9.1",
        "build": None,
        "push": None,
        "deployments": [
            {
                "name": "durable",
                "entrypoint": "flows/retrain.py:retrain",
                "work_pool": {"name": POOL, "work_queue_name": "default"},
            }
        ],
    }
    (folder / "prefect.yaml").write_text(yaml.safe_dump(spec))
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    prefect_deploy_all(folder, dict(os.environ, PREFECT_API_URL=prefect_api))
    return folder


class Worker:
    """A `prefect worker start` subprocess on the durable pool, killable."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def children(self) -> list[int]:
        """Processes started by this worker that are still alive (flow runs)."""
        return _descendants(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the worker and everything it started, as a crash or a node loss would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.log.close()


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        found.extend(kids)
        frontier.extend(kids)
    return found


@pytest.fixture
def setup(pipeline, project: Path, prefect_api: str, tmp_path: Path) -> Iterator[dict]:
    env = dict(
        os.environ,
        PREFECT_API_URL=prefect_api,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
        PREFECT_LOGGING_LEVEL="INFO",  # the run logs how to approve at INFO
        GOVFLOW_REGISTRY_URL=pipeline.url,
        GOVFLOW_ARTIFACT_ROOT=pipeline.artifacts,
        GOVFLOW_ACTOR=PIPELINE_ACTOR,
        GOVFLOW_CARDS=str(tmp_path / "cards"),
    )
    workers: list[Worker] = []

    def start() -> Worker:
        w = Worker(project, env, tmp_path / "worker.log")
        workers.append(w)
        return w

    yield {"env": env, "start": start, "pipeline": pipeline, "log": tmp_path / "worker.log"}
    for w in workers:
        if w.proc.poll() is None:
            w.kill()


def _run(config: Path) -> UUID:
    from prefect.deployments import run_deployment

    run = run_deployment("retrain/durable", parameters={"config_path": str(config)}, timeout=0)
    return run.id


def _state(run_id: UUID):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def _suspended(run_id: UUID) -> bool:
    state = _state(run_id)
    return bool(state and state.is_paused() and state.name == "Suspended")


def _final(run_id: UUID):
    state = _state(run_id)
    return state if state and state.is_final() else None


def _govflow(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "govflow", *args],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _registry(pipeline) -> Registry:
    return Registry(url=pipeline.url, artifact_root=pipeline.artifacts, policy=Policy())


def test_suspended_run_survives_a_worker_kill_and_finishes_on_another(setup) -> None:
    pipeline, env = setup["pipeline"], setup["env"]
    first = setup["start"]()
    run_id = _run(pipeline.base)
    wait_for(lambda: _suspended(run_id), timeout=150, what="the retrain to suspend for approval")
    # Suspended: the flow-run process has exited; nothing but the worker is alive.
    wait_for(lambda: not first.children(), timeout=30, what="the flow-run process to exit")
    log = setup["log"].read_text(errors="replace")
    assert f"govflow approve {MODEL} 1" in log  # the run says how to approve
    first.kill()  # a deploy or a reboot while the run waits

    second = setup["start"]()
    approved = _govflow(env, "approve", MODEL, "1", "--reason", "card reviewed", GOVFLOW_ACTOR="risk-officer")
    assert approved.returncode == 0, approved.stderr
    clicked = time.monotonic()
    state = wait_for(lambda: _final(run_id), timeout=150, what="the resumed run to finish on the new worker")
    assert state.is_completed() and state.name == "Promoted", state
    reg = _registry(pipeline)
    assert reg.resolve(f"{MODEL}@production").version == 1
    took = time.monotonic() - clicked
    # The rerun continued with the version it registered: nothing was trained or registered twice.
    actions = [e.action for e in reg.audit_log(model=MODEL)]
    assert actions.count("version.registered") == 1
    assert actions.count("run.waiting") == 1
    assert [a.actor for a in reg.get_version(MODEL, 1).approvals] == ["risk-officer"]
    reg.close()
    assert second.proc.poll() is None
    print(f"approval to production: {took:.1f} s")


def test_timed_out_suspension_is_rejected_by_reconcile_and_named(setup) -> None:
    pipeline, env = setup["pipeline"], setup["env"]
    setup["start"]()
    config = with_config(pipeline.base, approval_timeout=3)
    run_id = _run(config)
    wait_for(lambda: _suspended(run_id) or _final(run_id), timeout=150, what="the retrain to suspend")
    reg = _registry(pipeline)
    wait = wait_for(lambda: waiting.current_wait(reg, reg.get_version(MODEL, 1)), what="the recorded wait")
    # Past the deadline nothing of the run is alive to record the outcome: a real server fails the
    # run (its pause-expiry service), the test server may leave it suspended; reconcile settles both.
    wait_for(lambda: wait.expired(), timeout=30, what="the deadline")
    assert reg.get_version(MODEL, 1).stage == Stage.STAGING  # nobody has settled it yet

    out = _govflow(env, "reconcile", MODEL, "--json", GOVFLOW_ACTOR=PIPELINE_ACTOR)
    assert out.returncode == 0, out.stderr
    assert '"action": "rejected"' in out.stdout
    v = reg.get_version(MODEL, 1)
    assert v.stage == Stage.DEVELOPMENT
    rejected = [e for e in reg.audit_log(model=MODEL) if e.action == "version.rejected"]
    assert len(rejected) == 1 and "timed out" in rejected[0].payload["reason"]
    state = _state(run_id)
    assert state.is_completed() and state.name == "TimedOut"
    # Reconciling again changes nothing.
    again = _govflow(env, "reconcile", MODEL, "--json", GOVFLOW_ACTOR=PIPELINE_ACTOR)
    assert again.returncode == 0 and '"action"' not in again.stdout
    reg.close()


def test_cancelled_waiting_run_is_rejected_by_reconcile(setup) -> None:
    pipeline, env = setup["pipeline"], setup["env"]
    setup["start"]()
    run_id = _run(pipeline.base)
    wait_for(lambda: _suspended(run_id), timeout=150, what="the retrain to suspend")
    # `prefect flow-run cancel` on a waiting run: with no process to stop it ends Cancelled, not stuck.
    cancel = subprocess.run(
        [sys.executable, "-m", "prefect", "flow-run", "cancel", str(run_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    state = wait_for(lambda: _final(run_id), timeout=60, what="the cancelled run to end")
    assert state.is_cancelled(), state
    out = _govflow(env, "reconcile", GOVFLOW_ACTOR=PIPELINE_ACTOR)
    assert out.returncode == 0, out.stderr
    reg = _registry(pipeline)
    v = reg.get_version(MODEL, 1)
    assert v.stage == Stage.DEVELOPMENT
    assert "ended Cancelled" in v.approvals[-1].reason
    assert _state(run_id).is_cancelled()  # a cancelled run keeps its state
    reg.close()


def test_registry_approval_while_no_prefect_api_is_honoured(setup) -> None:
    pipeline, env = setup["pipeline"], setup["env"]
    setup["start"]()
    run_id = _run(pipeline.base)
    wait_for(lambda: _suspended(run_id), timeout=150, what="the retrain to suspend")
    offline = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    approved = _govflow(offline, "approve", MODEL, "1", "--reason", "ok", GOVFLOW_ACTOR="risk-officer")
    assert approved.returncode == 0, approved.stderr
    assert "PREFECT_API_URL is not set" in approved.stderr and str(run_id) in approved.stderr
    assert _suspended(run_id)  # recorded in the registry, the run not woken
    out = _govflow(env, "reconcile", MODEL, GOVFLOW_ACTOR=PIPELINE_ACTOR)
    assert out.returncode == 0 and "resumed" in out.stdout, out.stdout + out.stderr
    state = wait_for(lambda: _final(run_id), timeout=150, what="the resumed run to finish")
    assert state.name == "Promoted", state
    reg = _registry(pipeline)
    assert reg.resolve(f"{MODEL}@production").version == 1
    reg.close()
