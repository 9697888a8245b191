"""The steps of the cluster story, shared by ``flows.cluster.demo`` and its reduced test.

Each step does one thing a team member or an operator would do, against the running set-up of
``flows.cluster.team``, and returns what it saw; waits poll with a deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from flows.cluster.processes import ClusterError, processes_with_env, wait_until
from flows.cluster.team import Command, Team

RUN_ENV = "PREFECT__FLOW_RUN_ID"  # set by the worker in every flow-run process it starts


@dataclass
class Waiting:
    """A retrain run waiting for approval of ``model/version``."""

    model: str
    version: int
    run_id: str
    state: str


@contextmanager
def prefect_api(team: Team) -> Iterator[None]:
    """Point this process's Prefect client (``run_deployment``, ``get_client``) at the cluster."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: team.api_url}):
        yield


def start_runs(team: Team, deployment: str, parameters: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``run_deployment`` once per key, without waiting: key -> flow-run id."""
    from prefect.deployments import run_deployment

    runs = {}
    with prefect_api(team):
        for key, params in parameters.items():
            run = run_deployment(f"{deployment}/{deployment}", parameters=params, timeout=0, as_subflow=False)
            runs[key] = str(run.id)
    return runs


def start_retrains(team: Team, configs: dict[str, Any]) -> dict[str, str]:
    """Start the ``retrain`` deployment for every model at once: model -> flow-run id."""
    return start_runs(team, "retrain", {m: {"config_path": str(p)} for m, p in configs.items()})


def read_run(team: Team, run_id: str) -> Any:
    with team.client() as client:
        return client.read_flow_run(UUID(run_id))


def staged_version(team: Team, model: str) -> int | None:
    """The newest version of ``model`` in staging, if any."""
    reg = team.registry()
    try:
        staged = [v.version for v in reg.versions(model) if v.stage.value == "staging"]
    finally:
        reg.close()
    return max(staged) if staged else None


def wait_waiting(team: Team, runs: dict[str, str], timeout: float) -> dict[str, Waiting]:
    """Wait until every run is paused (or suspended) with its version in staging."""
    found: dict[str, Waiting] = {}

    def all_waiting() -> bool:
        for model, run_id in runs.items():
            if model in found:
                continue
            run = read_run(team, run_id)
            state = run.state
            if state is not None and state.is_final():
                raise ClusterError(f"{model}: retrain run ended {state.name} before waiting: {state.message}")
            if state is not None and state.is_paused():
                version = staged_version(team, model)
                if version is not None:
                    found[model] = Waiting(model, version, run_id, state.name)
        return len(found) == len(runs)

    wait_until(all_waiting, timeout, "every retrain run to wait for approval", interval=1)
    return found


def flow_run_processes(run_ids: list[str]) -> dict[str, list[int]]:
    """Processes alive right now that execute one of ``run_ids``: run id -> pids."""
    return processes_with_env(RUN_ENV, run_ids)


def worker_holding_most(team: Team, run_ids: list[str]) -> str:
    """The live worker whose process tree holds the most of these runs (the first on a tie)."""
    from flows.cluster.processes import process_tree

    held = flow_run_processes(run_ids)
    pids = {pid for found in held.values() for pid in found}
    counts = {name: len(pids & set(process_tree(pid))) for name, pid in team.worker_pids().items()}
    return max(sorted(counts), key=lambda n: counts[n])


def approve_cli(team: Team, approver: str, waiting: Waiting) -> float:
    """``govflow approve NAME V`` as ``approver`` (records it, resumes the run); returns when it began."""
    began = time.monotonic()
    team.govflow(approver, "approve", waiting.model, str(waiting.version), "--reason", "reviewed the card")
    return began


def approval_code(team: Team, approver: str, waiting: Waiting) -> str:
    """A one-time code from ``govflow approve NAME V --code`` run as ``approver``."""
    proc = team.govflow(approver, "approve", waiting.model, str(waiting.version), "--code", "--json")
    return str(json.loads(proc.stdout)["code"])


def approve_in_form(team: Team, approver: str, waiting: Waiting) -> float:
    """Approve in the Prefect UI's resume form (headless Chromium) with ``approver``'s one-time code.

    Returns when the form was submitted (``time.monotonic()``).
    """
    from flows.cluster.browser import approve_in_ui

    code = approval_code(team, approver, waiting)
    submitted = approve_in_ui(
        team.prefect_url,
        waiting.run_id,
        code=code,
        reason=f"approved by {approver} in the Prefect UI",
        screenshot=team.folder / "logs" / f"form-{waiting.model}.png",
    )
    team.commands.append(
        Command(f"Prefect UI: Resume form for {waiting.model}/{waiting.version} (Chromium)", 0)
    )
    return submitted


def production_version(team: Team, model: str) -> int | None:
    """What ``MODEL@production`` resolves to on the registry server, if anything."""
    from registry.errors import NotFound

    reg = team.registry()
    try:
        return reg.resolve(f"{model}@production").version
    except NotFound:
        return None
    finally:
        reg.close()


def wait_production(team: Team, model: str, version: int, since: float, timeout: float) -> float:
    """Wait until ``MODEL@production`` resolves to ``version``; seconds since ``since``."""
    wait_until(
        lambda: production_version(team, model) == version,
        timeout,
        f"{model}@production to resolve to {version}",
        interval=0.2,
    )
    return time.monotonic() - since


def wait_final(team: Team, runs: dict[str, str], timeout: float) -> dict[str, Any]:
    """Wait until every run has ended: key -> its final state."""
    states: dict[str, Any] = {}

    def done() -> bool:
        for key, run_id in runs.items():
            if key not in states:
                state = read_run(team, run_id).state
                if state is not None and state.is_final():
                    states[key] = state
        return len(states) == len(runs)

    wait_until(done, timeout, "the runs to end", interval=1)
    return states


def drift_runs(team: Team, model: str) -> list[Any]:
    """The rollback runs created for ``model`` so far (by the drift trigger)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter

    with team.client() as client:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["rollback"])),
        )
    return [r for r in found if r.parameters.get("model_name") == model]


def drift_rollback(team: Team, model: str, timeout: float) -> dict[str, Any]:
    """``monitor`` runs for every model and only ``model``'s new data has drifted; wait for its rollback.

    Returns every monitor run's final state, the drifted model's rollback state, its versions
    before and after, the others' production versions after, and the seconds from the
    ``drift-detected`` event (its time in Prefect's event log; the monitor run's end if the log
    has not got it) to ``@production`` reverted, as seen by a registry client.
    """
    before = production_version(team, model)
    # New data lands where the config's monitor.source looks; only this model's has drifted.
    team.recent[model].write_bytes(team.drifted[model].read_bytes())
    runs = start_runs(team, "monitor", {m: {"config_path": str(team.later[m])} for m in team.models})
    monitors = wait_final(team, runs, timeout)
    monitor_end = datetime.now(UTC)
    after = wait_until(
        lambda: (v := production_version(team, model)) != before and v,
        timeout,
        f"{model} to be reverted",
        interval=0.2,
    )
    reverted = datetime.now(UTC)
    rollback = wait_until(lambda: drift_runs(team, model), 60, f"a rollback run for {model}", interval=0.5)
    rollback_state = wait_final(team, {model: str(rollback[0].id)}, timeout)[model]
    occurred = event_occurred(team, "drift-detected", model)
    return {
        "monitors": monitors,
        "rollback": rollback_state,
        "before": before,
        "after": after,
        "others": {m: production_version(team, m) for m in team.models if m != model},
        "other_rollbacks": sum(len(drift_runs(team, m)) for m in team.models if m != model),
        "seconds": (reverted - (occurred or monitor_end)).total_seconds(),
        "from": "the drift-detected event" if occurred else "the monitor run's end",
    }


def event_occurred(team: Team, name: str, model: str) -> datetime | None:
    """When the newest ``govflow.model.<name>`` event about ``model`` occurred, per Prefect's events."""
    import httpx

    body = {
        "filter": {
            "event": {"name": [f"govflow.model.{name}"]},
            "resource": {"id": [f"govflow.model.{model}"]},
            "order": "DESC",
        },
        "limit": 1,
    }
    try:
        answer = httpx.post(f"{team.api_url}/events/filter", json=body, timeout=10)
        answer.raise_for_status()
        found = answer.json().get("events") or []
    except (httpx.HTTPError, ValueError):
        return None
    return datetime.fromisoformat(found[0]["occurred"]) if found else None
