"""govflow on Airflow 3: the retrain, monitor and rollback DAGs over the same registry and checks.

Needs the ``airflow`` extra in an environment of its own (``make install-airflow``): Airflow's
and Prefect's pins on FastAPI do not overlap. Nothing here imports Prefect.
"""

from __future__ import annotations

from typing import Any

__all__ = ["dags_for", "drift_asset", "monitor_dag", "retrain_dag", "rollback_dag"]


def __getattr__(name: str) -> Any:
    # The DAG factories import Airflow; the stage modules do not, so they load without it.
    if name in __all__:
        from govflow.airflow import dags

        return getattr(dags, name)
    raise AttributeError(name)
