"""``govflow server``: refuses a client URL, makes the first admin, prints where the token went."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.remote import RemoteRegistry
from tests.fixtures.backends import create_pg_database, drop_pg_database_later

CODE = "import govflow.cli.server; from govflow.cli import main; main()"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_refuses_an_http_registry_url() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE, "server"],
        env=_env(GOVFLOW_REGISTRY_URL="http://127.0.0.1:5000"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "GOVFLOW_REGISTRY_URL" in lines[0] and "database URL" in lines[0]


def test_init_admin_without_token_file_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE, "server", "--init-admin", "ops"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--token-file" in out.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_server_starts_with_a_first_admin(pg_server: str, tmp_path: Path, workers: str) -> None:
    url = create_pg_database(pg_server)
    port = _free_port()
    token_file = tmp_path / "admin.token"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CODE,
            "server",
            "--port",
            str(port),
            "--init-admin",
            "ops",
            "--token-file",
            str(token_file),
            "--workers",
            workers,
            "--log-level",
            "warning",
        ],
        env=_env(GOVFLOW_REGISTRY_URL=url, GOVFLOW_ARTIFACT_ROOT=str(tmp_path / "artifacts")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        admin: Any = RemoteRegistry(base, token=token)
        assert admin.policy.authenticated_approvals is True  # the server-mode default
        assert [u.name for u in admin.list_users()] == ["ops"]
        for _ in range(4):  # with two workers, requests land on both processes
            assert admin.models() == []
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        drop_pg_database_later(pg_server, url)
    assert str(token_file) in out and token not in out


@pytest.mark.parametrize("var", ["GOVFLOW_SERVER_MAX_UPLOAD"])
def test_a_bad_upload_cap_is_refused(var: str) -> None:
    from registry.errors import InvalidInput
    from registry.service import create_app

    os.environ[var] = "lots"
    try:
        with pytest.raises(InvalidInput, match=var):
            create_app(None, None)  # type: ignore[arg-type]
    finally:
        del os.environ[var]
