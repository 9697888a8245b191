"""``govflow users``: add, list, revoke, rotate; one line and exit 2 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import govflow.cli.users as users_cli
from govflow.cli import main
from registry import Registry
from registry.auth.authenticate import Authenticator
from registry.errors import InvalidInput, Unauthenticated
from tests.auth.conftest import open_user_registry


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run ``govflow ARGS`` in-process against a fresh SQLite registry; returns (code, out, err)."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("GOVFLOW_ACTOR", "root")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(users_cli, "open_registry", lambda: open_user_registry(url, tmp_path))

    def invoke(*args: str, expect: int = 0) -> tuple[str, str]:
        monkeypatch.setattr(sys, "argv", ["govflow", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        assert exit_info.value.code == expect, (args, out, err)
        if expect == 2:
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        return out, err

    invoke.url = url  # type: ignore[attr-defined]
    invoke.root = tmp_path  # type: ignore[attr-defined]
    return invoke


def _authenticate(run, token: str):
    reg = open_user_registry(run.url, run.root)
    try:
        return Authenticator(reg.db).authenticate(f"Bearer {token}")
    finally:
        reg.close()


def test_add_json_prints_exactly_name_roles_token(run) -> None:
    out, _ = run("users", "add", "bob", "--role", "pipeline", "--role", "reader", "--json")
    data = json.loads(out)
    assert set(data) == {"name", "roles", "token"}
    assert data["name"] == "bob" and data["roles"] == ["reader", "pipeline"]
    assert _authenticate(run, data["token"]).roles == frozenset({"reader", "pipeline"})


def test_add_prints_the_token_alone_on_stdout(run) -> None:
    out, err = run("users", "add", "carol", "--role", "approver")
    assert out.strip().startswith("gft_") and len(out.strip().splitlines()) == 1
    assert "not shown again" in err
    assert _authenticate(run, out.strip()).name == "carol"


def test_list_revoke_rotate(run) -> None:
    first = json.loads(run("users", "add", "dave", "--role", "operator", "--json")[0])["token"]
    run("users", "add", "erin", "--role", "admin", "--expires-in", "30d")
    listed = json.loads(run("users", "list", "--json")[0])
    assert [u["name"] for u in listed] == ["dave", "erin"]
    assert all("token" not in u for u in listed)
    erin = listed[1]
    assert erin["expires_at"] is not None and erin["active"] is True
    table, _ = run("users", "list")
    assert "dave" in table and "operator" in table and first not in table

    rotated = json.loads(run("users", "rotate", "dave", "--json")[0])
    assert set(rotated) == {"name", "roles", "token"} and rotated["token"] != first
    with pytest.raises(Unauthenticated):
        _authenticate(run, first)
    assert _authenticate(run, rotated["token"]).name == "dave"

    out, _ = run("users", "revoke", "dave")
    assert out.startswith("revoked dave")
    with pytest.raises(Unauthenticated, match="revoked"):
        _authenticate(run, rotated["token"])
    assert json.loads(run("users", "list", "--json")[0])[0]["active"] is False


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["users", "add", "bob", "--role", "root"], "roles: 'root' is not one of"),
        (["users", "add", "bob", "--role", "Admin"], "roles: 'Admin'"),
        (["users", "add", "bob\u200b", "--role", "reader"], "name:"),
        (["users", "add", "bob", "--role", "reader", "--expires-in", "30"], "--expires-in"),
        (["users", "add", "bob", "--role", "reader", "--expires-in", "0d"], "--expires-in"),
        (["users", "add", "bob", "--role", "reader", "--expires-in", "-1d"], "--expires-in"),
        (["users", "add", "bob", "--role", "reader", "--expires-in", "1.5d"], "--expires-in"),
        (["users", "add", "bob", "--role", "reader", "--expires-in", "\u0663d"], "--expires-in"),
        (["users", "add", "bob", "--role", "reader", "--expires-in", "9999999d"], "--expires-in"),
        (["users", "add", "bob", "--role", "reader", "--expires-in", "5000d"], "expires_in"),
        (["users", "add", "bob"], "--role"),
        (["users", "revoke", "ghost"], "no user named 'ghost'"),
        (["users", "rotate", "ghost"], "no user named 'ghost'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, args: list[str], needle: str) -> None:
    _, err = run(*args, expect=2)
    assert needle in err
    assert json.loads(run("users", "list", "--json")[0]) == []


def test_lookalike_name_is_refused_naming_the_existing_user(run) -> None:
    run("users", "add", "Bob", "--role", "reader")
    _, err = run("users", "add", "\uff42\uff4f\uff42", "--role", "admin", expect=2)
    assert "existing user 'Bob'" in err


def test_parse_lifetime() -> None:
    assert users_cli.parse_lifetime("90m") == timedelta(minutes=90)
    assert users_cli.parse_lifetime("12h") == timedelta(hours=12)
    assert users_cli.parse_lifetime(" 4w ") == timedelta(weeks=4)
    with pytest.raises(InvalidInput):
        users_cli.parse_lifetime("1d2h")


@pytest.mark.skipif(not hasattr(Registry, "add_user"), reason="Registry does not mix in UserAdmin yet")
def test_end_to_end_through_the_console_command(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GOVFLOW_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "GOVFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "GOVFLOW_ACTOR": "root",
    }

    def govflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "govflow", *args], env=env, capture_output=True, text=True, timeout=120
        )

    added = govflow("users", "add", "bob", "--role", "reader", "--json")
    assert added.returncode == 0, added.stderr
    assert set(json.loads(added.stdout)) == {"name", "roles", "token"}
    bad = govflow("users", "add", "BOB", "--role", "reader")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
