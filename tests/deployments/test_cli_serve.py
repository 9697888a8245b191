"""``govflow serve`` as a real subprocess: it serves production, follows a promotion, refuses cleanly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deployments.support import AUTH, MODEL, TOKEN, promote, register, wait_for

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


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--poll", "0"],
            "error: --poll: 0 leaves only POST /reload, which is off without a token; give a poll above 0, "
            "or start govflow serve with --reload-token-file PATH (or GOVFLOW_SERVE_TOKEN) to turn it on",
        ),
        (
            ["--reload-token-file", "/nonexistent/reload.token"],
            "error: --reload-token-file: cannot read /nonexistent/reload.token: No such file or directory",
        ),
    ],
)
def test_serve_refuses_a_setup_without_a_usable_reload_token(
    sqlite_registry, estimators, args: list[str], line: str
) -> None:
    reg = sqlite_registry
    promote(reg, register(reg, estimators[0]))
    proc = subprocess.run(
        [*CLI, "serve", MODEL, "--port", "0", *args],
        env=_env(reg),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [line]


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory, estimators) -> Iterator[dict[str, Any]]:
    """``govflow serve`` with its reload token from GOVFLOW_SERVE_TOKEN; stdout and stderr apart."""
    from registry import Policy, Registry

    home = tmp_path_factory.mktemp("cli-serve")
    reg = Registry(url=f"sqlite:///{home / 'r.db'}", artifact_root=str(home / "art"), policy=Policy())
    promote(reg, register(reg, estimators[0]))
    out, err = home / "stdout.log", home / "stderr.log"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [*CLI, "serve", MODEL, "--port", "0", "--poll", "30", "--log-level", "info"],
            env={**_env(reg), "GOVFLOW_SERVE_TOKEN": TOKEN},
            stdout=stdout,
            stderr=stderr,
        )
    try:
        url = wait_for(lambda: proc.poll() is not None or _listening(out), timeout=60, what="listening")
        assert proc.poll() is None, err.read_text()
        wait_for(lambda: _health(url), timeout=30, what="the server to answer")
        yield {"url": url, "reg": reg, "stdout": out, "stderr": err, "proc": proc}
    finally:
        proc.terminate()
        proc.wait(15)
        reg.close()


def _lines(path: Path, route: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("path") == route]


def test_cli_reload_answers_only_the_token_it_was_started_with(cli_server, estimators) -> None:
    url, reg = cli_server["url"], cli_server["reg"]
    v2 = register(reg, estimators[1])
    promote(reg, v2)
    refused = httpx.post(f"{url}/reload", timeout=10)
    assert refused.status_code == 401, refused.text
    assert httpx.get(f"{url}/model").json()["version"] == v2 - 1  # the poll is 30 s: nothing moved
    done = httpx.post(f"{url}/reload", headers=AUTH, timeout=30)
    assert done.status_code == 200 and done.json()["version"] == v2


def test_a_client_that_goes_away_is_one_log_line_not_a_traceback(cli_server) -> None:
    host, port = cli_server["url"].removeprefix("http://").rsplit(":", 1)
    head = f"POST /predict HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
    partial = [
        head + 'content-length: 1000\r\n\r\n[{"age": 4',  # the body stops short
        head + 'transfer-encoding: chunked\r\n\r\n6\r\n[{"age',  # a chunk and then nothing
        head + "content-len",  # the headers stop short: no request reaches the app
    ]
    for request in partial:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request.encode())
    gone = wait_for(
        lambda: len(found := _lines(cli_server["stdout"], "/predict")) >= 2 and found,
        timeout=15,
        what="two /predict log lines",
    )
    assert [(line["status"], line.get("detail")) for line in gone] == [
        (499, "client went away before the request body arrived")
    ] * 2
    # The server still answers, and wrote no traceback for any of it.
    assert _health(cli_server["url"]) is not None
    stderr = cli_server["stderr"].read_text()
    assert "Traceback" not in stderr and "Exception in ASGI application" not in stderr, stderr
