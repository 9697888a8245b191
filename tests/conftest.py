"""Shared fixtures: the backend matrix (SQLite, PostgreSQL), the S3 endpoint, the Prefect server."""

import os

# Keep tests hermetic: no identity or registry leaks in from the developer's shell.
for _var in ("GOVFLOW_REGISTRY_URL", "GOVFLOW_ARTIFACT_ROOT", "GOVFLOW_POLICY", "GOVFLOW_ACTOR"):
    os.environ.pop(_var, None)

pytest_plugins = ["tests.fixtures.backends"]
