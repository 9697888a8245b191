"""Airflow tests need the Airflow venv: skip this folder where Airflow is not installed.

Under CI with GOVFLOW_AIRFLOW_TESTS=1 a missing Airflow stops the run instead. A test module here
that imports Airflow at its top should start with ``pytest.importorskip("airflow")``.
"""

import os

import pytest

try:
    import airflow  # noqa: F401

    MISSING = None
except ImportError as exc:
    MISSING = f"Airflow is not installed in this environment (use .venv-airflow): {exc}"
    if os.environ.get("CI") == "true" and os.environ.get("GOVFLOW_AIRFLOW_TESTS") == "1":
        raise RuntimeError(f"GOVFLOW_AIRFLOW_TESTS=1 but {MISSING}") from exc


@pytest.fixture(scope="session", autouse=True)
def _needs_airflow():
    if MISSING:
        pytest.skip(MISSING)
