"""prefect.yaml against a real server: `prefect deploy --all` of the real file, then its schedules,
job variables, parameters and triggers (read back as automations), and drift -> rollback run by a
worker whose own environment names no registry (the deployment carries it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows import events
from registry import Policy, Registry, Stage
from tests.fixtures.prefect import prefect_deploy_all, wait_for

ROOT = Path(__file__).resolve().parents[2]
POOL = "govflow-process"
CONFIG = "flows/examples/credit-risk.yaml"
NAMES = ("retrain", "monitor", "rollback", "reconcile")


class Deployed:
    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = env  # the GOVFLOW_* settings exported when `prefect deploy` ran
        self.url = env["GOVFLOW_REGISTRY_URL"]
        self.artifacts = env["GOVFLOW_ARTIFACT_ROOT"]


@pytest.fixture(scope="module")
def deployed(prefect_api: str, tmp_path_factory) -> Deployed:
    """A copy of the project deployed with `prefect deploy --all` to the test server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    project = tmp_path_factory.mktemp("project")
    state = tmp_path_factory.mktemp("state")
    shutil.copy(ROOT / "prefect.yaml", project / "prefect.yaml")
    shutil.copytree(
        ROOT / "flows",
        project / "flows",
        ignore=shutil.ignore_patterns("__pycache__", "data", "releases", "cluster"),
    )
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    settings = {
        "GOVFLOW_REGISTRY_URL": f"sqlite:///{state / 'registry.db'}",
        "GOVFLOW_ARTIFACT_ROOT": str(state / "artifacts"),
        "GOVFLOW_S3_ENDPOINT_URL": "",
        "GOVFLOW_POLICY": "",
        "GOVFLOW_TOKEN_FILE": str(state / "worker-token"),  # a path on the worker, never the token
        "GOVFLOW_CHECKPOINT_KEY": "",
        "GOVFLOW_CHECKPOINT_OUT": "",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env.update(settings, PREFECT_API_URL=prefect_api, GOVFLOW_TOKEN="s3cret-never-baked")
    prefect_deploy_all(project, env)
    return Deployed(project, settings)


def _deployment(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(f"{name}/{name}")


def _automation(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(f"{name}__automation_1")
    assert len(found) == 1, found
    return found[0]


def _runs(deployment_id, *, triggered: bool = True) -> list:
    """Runs of a deployment; only those an automation or a caller made (not the scheduler's)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        )
    return [r for r in runs if not (triggered and r.auto_scheduled)]


def test_schedules_and_parameters(deployed: Deployed) -> None:
    retrain, monitor, rollback, reconcile = (_deployment(n) for n in NAMES)
    assert [s.schedule.cron for s in retrain.schedules] == ["0 2 * * 1"]
    assert [s.schedule.interval.total_seconds() for s in monitor.schedules] == [3600]
    assert [s.schedule.interval.total_seconds() for s in reconcile.schedules] == [600]
    assert rollback.schedules == []
    assert all(s.active for s in retrain.schedules + monitor.schedules + reconcile.schedules)
    # monitor reads the config's monitor.source: no data path is baked into the deployment
    assert monitor.parameters == {"config_path": CONFIG}
    assert retrain.parameters == {"config_path": CONFIG} == rollback.parameters
    assert reconcile.parameters == {}
    assert reconcile.entrypoint == "flows/reconcile.py:reconcile"
    assert {d.work_pool_name for d in (retrain, monitor, rollback, reconcile)} == {POOL}


def test_every_deployment_carries_the_deployers_settings_and_no_token(deployed: Deployed) -> None:
    for name in NAMES:
        env = _deployment(name).job_variables["env"]
        assert env == deployed.env, name  # empty stays empty ("the default"), never "{{ $NAME }}"
        assert "GOVFLOW_TOKEN" not in env
        assert not any("{{" in value or "s3cret" in value for value in env.values())


def test_triggers_are_automations_on_the_contracted_events(deployed: Deployed) -> None:
    retrain = _automation("retrain")
    assert retrain.trigger.expect == {"govflow.model.rollback-skipped"}
    assert retrain.trigger.match.model_dump()["prefect.resource.id"] == "govflow.model.*"
    (run_retrain,) = retrain.actions
    assert run_retrain.deployment_id == _deployment("retrain").id
    assert run_retrain.parameters == {"config_path": "{{ event.payload.config_path }}"}

    rollback = _automation("rollback")
    assert rollback.trigger.expect == {"govflow.model.drift-detected"}
    assert rollback.actions[0].parameters["config_path"] == "{{ event.payload.config_path }}"
    assert rollback.actions[0].parameters["expected_version"] == "{{ event.payload.version }}"

    reconcile = _automation("reconcile")
    assert reconcile.trigger.expect == {
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
        "prefect.flow-run.Cancelled",
    }
    related = reconcile.trigger.match_related
    related = related[0] if isinstance(related, list) else related
    assert related.model_dump() == {"prefect.resource.role": "flow", "prefect.resource.name": "retrain"}
    assert reconcile.actions[0].deployment_id == _deployment("reconcile").id
    for automation in (retrain, rollback, reconcile):
        assert automation.enabled and automation.trigger.posture.value == "Reactive"


def test_drift_event_triggers_rollback_run_executed_by_worker(deployed: Deployed, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    reg = Registry(url=deployed.url, artifact_root=deployed.artifacts, policy=Policy())
    for n in (1, 2):
        blob = tmp_path / f"m{n}.bin"
        blob.write_bytes(f"model {n}".encode())
        reg.register("credit-risk", blob, actor="ml-pipeline")
        reg.transition("credit-risk", n, "staging", actor="ml-pipeline")
        reg.approve("credit-risk", n, actor="risk-officer")
        reg.transition("credit-risk", n, "production", actor="risk-officer")

    rollback = _deployment("rollback")
    events.emit(
        "drift-detected",
        "credit-risk",
        2,
        "monitor",
        psi=0.93,
        drifted_features=["income"],
        config_path=CONFIG,
    )
    run = wait_for(lambda: _runs(rollback.id), timeout=60, what="the trigger to create a rollback run")[0]
    assert run.parameters["model_name"] == "credit-risk"
    assert run.parameters["expected_version"] == 2
    assert run.parameters["reason"] == "drift detected on version 2: max PSI 0.93"
    assert run.parameters["config_path"] == CONFIG

    # The worker's own environment names no registry: the deployment's job variables must.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env.update(GOVFLOW_ACTOR="rollback-bot", PREFECT_WORKER_QUERY_SECONDS="1")
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--run-once"],
        cwd=deployed.project,
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
    assert state.is_completed() and state.name == "RolledBack", state
    assert reg.resolve("credit-risk@production").version == 1
    v2 = reg.get_version("credit-risk", 2)
    assert v2.stage == Stage.ARCHIVED and v2.rolled_back
    last = [e for e in reg.audit_log(model="credit-risk") if e.action.startswith("model.")][-2:]
    assert [e.action for e in last] == ["model.rolled_back", "model.deployed"]
    assert last[0].actor == "rollback-bot" and "max PSI 0.93" in last[0].payload["reason"]
    assert (deployed.project / "flows" / "examples" / "releases" / "credit-risk.json").is_file()
    reg.close()


def test_rollback_skipped_starts_a_retrain_and_its_failure_starts_a_reconcile(deployed: Deployed) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Failed

    retrain, monitor, reconcile = _deployment("retrain"), _deployment("monitor"), _deployment("reconcile")
    with get_client(sync_client=True) as client:
        # A failed run of another flow must not wake reconcile.
        other = client.create_flow_run_from_deployment(monitor.id)
        client.set_flow_run_state(other.id, Failed(message="not a retrain"), force=True)
    events.emit(
        "rollback-skipped", "credit-risk", 2, "rollback-bot", reason="nothing left", config_path=CONFIG
    )
    run = wait_for(lambda: _runs(retrain.id), timeout=60, what="the trigger to create a retrain run")[0]
    assert run.parameters == {"config_path": CONFIG}

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Failed(message="worker lost"), force=True)
    woke = wait_for(lambda: _runs(reconcile.id), timeout=60, what="the trigger to create a reconcile run")
    assert len(woke) == 1 and woke[0].parameters == {}
    assert woke[0].created_by is not None and woke[0].created_by.type == "AUTOMATION"


def test_an_unexported_setting_stays_a_literal_placeholder(monkeypatch) -> None:
    # What docs/flows.md warns about: `prefect deploy` keeps "{{ $NAME }}" for an unset variable.
    import yaml
    from prefect.utilities.templating import apply_values

    env = yaml.safe_load((ROOT / "prefect.yaml").read_text())["definitions"]["env"]
    monkeypatch.delenv("GOVFLOW_POLICY", raising=False)
    monkeypatch.setenv("GOVFLOW_REGISTRY_URL", "")
    out = apply_values(env, dict(os.environ), remove_notset=False)
    assert out["GOVFLOW_POLICY"] == "{{ $GOVFLOW_POLICY }}"
    assert out["GOVFLOW_REGISTRY_URL"] == ""
