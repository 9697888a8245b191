"""prefect.yaml against a real server: deploy --all, schedules, and drift-detected -> rollback via a worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows import events
from registry import Policy, Registry, Stage
from tests.fixtures.prefect import wait_for

ROOT = Path(__file__).resolve().parents[2]
POOL = "govflow-process"


@pytest.fixture(scope="module")
def deployed(prefect_api: str, tmp_path_factory) -> Path:
    """A copy of the project deployed with `prefect deploy --all` to the test server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    project = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "prefect.yaml", project / "prefect.yaml")
    shutil.copytree(
        ROOT / "flows", project / "flows", ignore=shutil.ignore_patterns("__pycache__", "data", "releases")
    )
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PREFECT_CLI_PROMPT="false")
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", "deploy", "--all"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return project


def _deployment(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(f"{name}/{name}")


def test_schedules_are_registered(deployed: Path) -> None:
    retrain, monitor = _deployment("retrain"), _deployment("monitor")
    assert [s.schedule.cron for s in retrain.schedules] == ["0 2 * * 1"]
    assert [s.schedule.interval.total_seconds() for s in monitor.schedules] == [3600]
    assert all(s.active for s in retrain.schedules + monitor.schedules)
    assert retrain.work_pool_name == POOL and retrain.parameters["config_path"].endswith("credit-risk.yaml")


def test_drift_event_triggers_rollback_run_executed_by_worker(
    deployed: Path, tmp_path: Path, monkeypatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter

    url, artifacts = f"sqlite:///{tmp_path / 'registry.db'}", str(tmp_path / "artifacts")
    reg = Registry(url=url, artifact_root=artifacts, policy=Policy())
    for n in (1, 2):
        blob = tmp_path / f"m{n}.bin"
        blob.write_bytes(f"model {n}".encode())
        reg.register("credit-risk", blob, actor="ml-pipeline")
        reg.transition("credit-risk", n, "staging", actor="ml-pipeline")
        reg.approve("credit-risk", n, actor="risk-officer")
        reg.transition("credit-risk", n, "production", actor="risk-officer")

    rollback = _deployment("rollback")
    events.emit("drift-detected", "credit-risk", 2, "monitor", psi=0.93, drifted_features=["income"])

    def created():
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                flow_run_filter=FlowRunFilter(),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[rollback.id])),
            )

    run = wait_for(created, timeout=60, what="the trigger to create a rollback run")[0]
    assert run.parameters["model_name"] == "credit-risk"
    assert run.parameters["expected_version"] == 2
    assert run.parameters["reason"] == "drift detected on version 2: max PSI 0.93"

    env = dict(
        os.environ,
        GOVFLOW_REGISTRY_URL=url,
        GOVFLOW_ARTIFACT_ROOT=artifacts,
        GOVFLOW_ACTOR="rollback-bot",
        PREFECT_WORKER_QUERY_SECONDS="1",
    )
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--run-once"],
        cwd=deployed,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]

    def finished():
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run.id).state
        return state if state and state.is_final() else None

    state = wait_for(finished, timeout=60, what="the rollback run to finish")
    assert state.is_completed(), state
    assert reg.resolve("credit-risk@production").version == 1
    v2 = reg.get_version("credit-risk", 2)
    assert v2.stage == Stage.ARCHIVED and v2.rolled_back
    last = reg.audit_log(model="credit-risk")[-2:]
    assert [e.action for e in last] == ["model.rolled_back", "model.deployed"]
    assert last[0].actor == "rollback-bot" and "max PSI 0.93" in last[0].payload["reason"]
    reg.close()
