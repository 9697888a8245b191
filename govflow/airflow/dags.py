"""DAG factories: retrain, monitor and rollback for one pipeline config.

Each task is a thin call into ``govflow.airflow.stages``, ``.decision`` or ``.drift``, which call
the same flows/, checks/ and registry/ code as the Prefect flows.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import DAG, Asset, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from flows.config import PipelineConfig
from govflow.airflow import decision, drift, stages
from govflow.airflow.approval import GovflowApproval

START = datetime(2026, 1, 1, tzinfo=UTC)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def drift_asset(model: str) -> Asset:
    """The asset the monitor DAG updates when drift acts on ``model``; the rollback DAG listens."""
    return Asset(name=f"govflow_drift_{_slug(model)}", uri=f"govflow://drift/{model}", group="govflow")


def _run() -> stages.RunInfo:
    return stages.RunInfo.from_context(get_current_context())


def retrain_dag(
    config_path: str,
    *,
    dag_id: str | None = None,
    schedule: Any = None,
    assigned_users: list[dict[str, str]] | None = None,
) -> DAG:
    """validate → train → evaluate → register → gates → approval → promote → deploy, then outcome.

    ``assigned_users`` (``[{"id": ..., "name": ...}]``) limits who Airflow lets answer; the
    registry's rules apply to whoever answers either way.
    """
    config = PipelineConfig.load(config_path)  # a bad config fails the DAG import, in one line
    name = config.model_name
    with DAG(
        dag_id=dag_id or f"govflow_retrain_{_slug(name)}",
        schedule=schedule,
        start_date=START,
        catchup=False,
        tags=["govflow", name],
        doc_md=f"Retrain **{name}** from `{config_path}` and ask for approval before production.",
    ) as dag:

        @task(task_id="validate")
        def validate() -> dict[str, Any]:
            return stages.validate(config_path)

        @task(task_id="train")
        def train(validated: dict[str, Any]) -> dict[str, Any]:
            if not validated["passed"]:
                raise AirflowSkipException("data gate failed; nothing trained or registered")
            return stages.train(config_path, _run(), validated)

        @task(task_id="evaluate")
        def evaluate(validated: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
            return stages.evaluate(config_path, validated, trained)

        @task(task_id="register")
        def register(validated: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any]) -> dict[str, Any]:
            return stages.register(config_path, _run(), validated, trained, evaluated)

        @task(task_id="gates")
        def gates(validated: dict[str, Any], trained: dict[str, Any], registered: dict[str, Any]) -> dict[str, Any]:
            return stages.gates(config_path, _run(), validated, trained, registered)

        @task(task_id="promote")
        def promote(registered: dict[str, Any]) -> dict[str, Any]:
            return decision.promote(config_path, _run(), registered)

        @task(task_id="deploy")
        def deploy(promoted: dict[str, Any]) -> dict[str, Any]:
            if promoted["outcome"] != "promoted":
                raise AirflowSkipException(f"not deployed: {promoted['outcome']}: {promoted['reason']}")
            return decision.deploy(config_path, promoted)

        @task(task_id="outcome", trigger_rule="none_failed")
        def outcome() -> dict[str, Any]:
            return _outcome(config_path, get_current_context()["ti"])

        validated = validate()
        trained = train(validated)
        evaluated = evaluate(validated, trained)
        registered = register(validated, trained, evaluated)
        gated = gates(validated, trained, registered)
        approval = GovflowApproval(task_id="approval", config_path=config_path, assigned_users=assigned_users)
        gated >> approval
        promoted = promote(registered)
        approval >> promoted
        deployed = deploy(promoted)
        deployed >> outcome()
    return dag


def _outcome(config_path: str, ti: Any) -> dict[str, Any]:
    """The run's outcome (promoted, rejected, timed-out, gates-failed…) and its model card."""
    registered = ti.xcom_pull(task_ids="register")
    if registered is None:
        gate = (ti.xcom_pull(task_ids="validate") or {}).get("gate") or {}
        return {"outcome": "gates-failed", "version": None, "reason": f"data gate failed: {gate.get('message')}"}
    return decision.outcome(config_path, _run(), registered)


def monitor_dag(config_path: str, *, dag_id: str | None = None, schedule: Any = "@hourly") -> DAG:
    """Check drift on a schedule; when drift acts, update the drift asset (model and version in it)."""
    config = PipelineConfig.load(config_path)
    asset = drift_asset(config.model_name)
    with DAG(
        dag_id=dag_id or f"govflow_monitor_{_slug(config.model_name)}",
        schedule=schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["govflow", config.model_name],
        doc_md=f"Drift of **{config.model_name}** in production; emits `{asset.uri}` when it acts.",
    ) as dag:

        @task(task_id="check")
        def check() -> dict[str, Any]:
            return drift.monitor(config_path)

        @task(task_id="signal", outlets=[asset])
        def signal(found: dict[str, Any]) -> dict[str, Any]:
            if found["verdict"] != "act":
                raise AirflowSkipException(f"drift verdict {found['verdict']}: no rollback asked")
            extra = drift.event_extra(found)
            get_current_context()["outlet_events"][asset].extra = extra
            return extra

        signal(check())
    return dag


def rollback_dag(config_path: str, *, dag_id: str | None = None, monitor_dag_id: str | None = None) -> DAG:
    """Started by the drift asset: roll back once per episode and deploy what was restored.

    Acts only on events the monitor DAG (``monitor_dag_id``) emitted, on drift the registry
    holds evidence of.
    """
    config = PipelineConfig.load(config_path)
    asset = drift_asset(config.model_name)
    monitor_id = monitor_dag_id or f"govflow_monitor_{_slug(config.model_name)}"
    with DAG(
        dag_id=dag_id or f"govflow_rollback_{_slug(config.model_name)}",
        schedule=[asset],
        start_date=START,
        catchup=False,
        tags=["govflow", config.model_name],
        doc_md=f"Roll **{config.model_name}** back when `{asset.uri}` is updated by its monitor.",
    ) as dag:

        @task(task_id="rollback")
        def rollback() -> list[dict[str, Any]]:
            triggered = get_current_context()["triggering_asset_events"]
            events = [
                {"extra": dict(e.extra or {}), "source_dag_id": e.source_dag_id, "source_run_id": e.source_run_id}
                for events in triggered.values()
                for e in events
            ]
            return drift.rollback(config_path, events, monitor_id)

        rollback()
    return dag


def dags_for(config_path: str) -> list[DAG]:
    """The three DAGs of one pipeline config."""
    return [retrain_dag(config_path), monitor_dag(config_path), rollback_dag(config_path)]
