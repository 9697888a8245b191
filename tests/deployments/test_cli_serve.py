"""``govflow serve`` as a real subprocess: it serves production, follows a promotion, refuses cleanly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.deployments.support import MODEL, promote, register, wait_for

# Imports the command module explicitly, so this works before and after govflow.cli lists it.
CLI = [sys.executable, "-c", "import govflow.cli.serve; from govflow.cli import main; main()"]


def _env(reg) -> dict[str, str]:
    return {
        **os.environ,
        "GOVFLOW_REGISTRY_URL": reg.url,
        "GOVFLOW_ARTIFACT_ROOT": reg.artifact_root,
        "GOVFLOW_ACTOR": "server",
    }


def _listening(log: Path) -> str | None:
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "listening":
            return json.loads(line)["url"]
    return None


def _health(url: str) -> dict | None:
    try:
        return httpx.get(f"{url}/health", timeout=1).json()
    except httpx.HTTPError:
        return None


def test_cli_serves_and_follows_promotion(sqlite_registry, estimators, tmp_path: Path) -> None:
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", MODEL, "--port", "0", "--poll", "0.2", "--log-level", "warning"],
            env=_env(reg),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # --port 0: the server names the port it got in its "listening" log line.
        url = wait_for(
            lambda: proc.poll() is not None or _listening(log), timeout=60, what="the listening line"
        )
        assert proc.poll() is None, log.read_text()
        wait_for(lambda: _health(url), timeout=30, what="the server to answer")
        assert proc.poll() is None, log.read_text()
        assert httpx.get(f"{url}/model").json()["version"] == v1
        v2 = register(reg, estimators[1])
        promote(reg, v2)
        wait_for(lambda: httpx.get(f"{url}/model").json()["version"] == v2, timeout=5, what="v2 served")
        assert (
            httpx.post(
                f"{url}/predict", json=[{"age": 40, "income": 50.0, "plan": "pro", "active": False}]
            ).json()["version"]
            == v2
        )
    finally:
        proc.terminate()
        proc.wait(15)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("path") == "/predict"]
    assert requests and requests[-1]["version"] == v2 and requests[-1]["status"] == 200
    assert any(line.get("event") == "swapped" and line["version"] == v2 for line in lines)


def test_cli_refuses_without_production_version(sqlite_registry, estimators) -> None:
    reg = sqlite_registry
    register(reg, estimators[0])
    proc = subprocess.run(
        [*CLI, "serve", MODEL, "--port", "0"], env=_env(reg), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {MODEL}@production is not set"]


def test_port_in_use_is_one_clear_refusal() -> None:
    from deployments.server import bind
    from registry.errors import DeployError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(DeployError, match=f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}"):
            bind("127.0.0.1", taken.getsockname()[1])
