"""govflow's DAGs: retrain, monitor and rollback for each pipeline config in GOVFLOW_AIRFLOW_CONFIGS.

GOVFLOW_AIRFLOW_CONFIGS lists config paths separated by ``:``; by default the example config.
GOVFLOW_AIRFLOW_MONITOR_SCHEDULE is the monitor's schedule (a cron expression or preset, default
``@hourly``; ``none`` for runs started by hand only).
"""

from __future__ import annotations

import os
from pathlib import Path

from govflow.airflow import monitor_dag, retrain_dag, rollback_dag

EXAMPLE = Path(__file__).resolve().parent.parent / "flows" / "examples" / "credit-risk.yaml"

_schedule = os.environ.get("GOVFLOW_AIRFLOW_MONITOR_SCHEDULE", "@hourly")
_monitor_schedule = None if _schedule.strip().lower() == "none" else _schedule

for _path in filter(None, os.environ.get("GOVFLOW_AIRFLOW_CONFIGS", str(EXAMPLE)).split(os.pathsep)):
    for _dag in (retrain_dag(_path), monitor_dag(_path, schedule=_monitor_schedule), rollback_dag(_path)):
        globals()[_dag.dag_id] = _dag
