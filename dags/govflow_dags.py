"""govflow's DAGs: retrain, monitor and rollback for each pipeline config in GOVFLOW_AIRFLOW_CONFIGS.

GOVFLOW_AIRFLOW_CONFIGS lists config paths separated by ``:``; by default the example config.
"""

from __future__ import annotations

import os
from pathlib import Path

from govflow.airflow import dags_for

EXAMPLE = Path(__file__).resolve().parent.parent / "flows" / "examples" / "credit-risk.yaml"

for _path in filter(None, os.environ.get("GOVFLOW_AIRFLOW_CONFIGS", str(EXAMPLE)).split(os.pathsep)):
    for _dag in dags_for(_path):
        globals()[_dag.dag_id] = _dag
