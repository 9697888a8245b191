"""Shared fixtures: the backend matrix (SQLite, PostgreSQL), the S3 endpoint, the Prefect server."""

import os
import tempfile

# Keep tests hermetic: no identity or registry leaks in from the developer's shell.
for _var in ("GOVFLOW_REGISTRY_URL", "GOVFLOW_ARTIFACT_ROOT", "GOVFLOW_POLICY", "GOVFLOW_ACTOR"):
    os.environ.pop(_var, None)

# Prefect reads these at import: a private home, no telemetry, and quiet logs.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="govflow-prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("PREFECT_API_URL", None)

pytest_plugins = ["tests.fixtures.backends", "tests.fixtures.prefect", "tests.fixtures.s3", "tests.fixtures.server"]
