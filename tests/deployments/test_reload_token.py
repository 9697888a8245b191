"""``POST /reload`` answers only the token the server was started with, and is off without one."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from registry.errors import InvalidInput
from tests.deployments.support import AUTH, MODEL, TOKEN, promote, register


def _version(client: httpx.Client) -> int:
    return client.get("/model").raise_for_status().json()["version"]


def test_a_server_started_without_a_token_has_reload_off(sqlite_registry, estimators) -> None:
    from deployments.server import ServerThread
    from deployments.serving import create_app

    reg = sqlite_registry
    promote(reg, register(reg, estimators[0]))
    with ServerThread(create_app(reg, MODEL, poll=0)) as srv, httpx.Client(base_url=srv.url) as client:
        promote(reg, register(reg, estimators[1]))
        r = client.post("/reload")
        assert r.status_code == 403, r.text
        assert r.json()["field"] == "reload"
        assert r.json()["detail"] == (
            "POST /reload is off: start govflow serve with --reload-token-file PATH "
            "(or GOVFLOW_SERVE_TOKEN) to turn it on"
        )
        assert client.post("/reload", headers=AUTH).status_code == 403  # no token matches "none"
        assert _version(client) == 1  # nothing was reloaded


def test_reload_is_off_but_the_poll_still_follows(sqlite_registry, estimators, serve_app) -> None:
    reg = sqlite_registry
    promote(reg, register(reg, estimators[0]))
    srv = serve_app(reg, poll=30, reload_token=None)
    r = httpx.post(f"{srv.url}/reload")
    assert r.status_code == 403 and r.json()["detail"].endswith(
        "; the server checks the registry every 30s anyway"
    )


WRONG = [
    None,
    "",
    "Bearer",
    f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN}x",
    f"Bearer x{TOKEN}",
    f"Bearer {TOKEN.upper()}",
    f"Bearer {TOKEN.replace('e', 'е')}",  # Cyrillic е: looks the same, is not the token
    f"Basic {TOKEN}",
    TOKEN,
    f"Token {TOKEN}",
    f"Bearer {TOKEN} {TOKEN}",
]


def test_reload_refuses_anything_but_the_servers_token(sqlite_registry, estimators, serve_app) -> None:
    reg = sqlite_registry
    promote(reg, register(reg, estimators[0]))
    srv = serve_app(reg, poll=0)
    promote(reg, register(reg, estimators[1]))
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        for authorization in WRONG:
            headers = {} if authorization is None else {"authorization": authorization.encode()}
            r = client.post("/reload", headers=headers, params={"token": TOKEN})  # a query token is none
            assert r.status_code == 401, (authorization, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["field"] == "authorization" and "\n" not in r.json()["detail"]
        assert _version(client) == 1  # none of them reloaded
        # The right token, the scheme in any case, does what a reload does.
        result = client.post("/reload", headers={"authorization": f"bearer {TOKEN}"}).json()
        assert (result["changed"], result["version"]) == (True, 2)


@pytest.mark.parametrize("token", ["", " " * 20, "x" * 15])
def test_an_app_is_not_built_with_a_guessable_token(sqlite_registry, estimators, token: str) -> None:
    from deployments.serving import create_app

    promote(sqlite_registry, register(sqlite_registry, estimators[0]))
    with pytest.raises(InvalidInput, match="reload_token: the reload token has"):
        create_app(sqlite_registry, MODEL, poll=0, reload_token=token)


def test_the_reload_token_comes_from_the_flag_then_the_environment(tmp_path: Path, monkeypatch) -> None:
    from deployments.reload_token import configured_token

    monkeypatch.delenv("GOVFLOW_SERVE_TOKEN", raising=False)
    monkeypatch.delenv("GOVFLOW_SERVE_TOKEN_FILE", raising=False)
    assert configured_token() is None
    flag, named = tmp_path / "flag", tmp_path / "named"
    flag.write_text("f" * 20 + "\n")
    named.write_text("n" * 20)
    monkeypatch.setenv("GOVFLOW_SERVE_TOKEN_FILE", str(named))
    assert configured_token() == "n" * 20
    monkeypatch.setenv("GOVFLOW_SERVE_TOKEN", "e" * 20)
    assert configured_token() == "e" * 20
    assert configured_token(flag) == "f" * 20  # trailing newline of the file dropped


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"GOVFLOW_SERVE_TOKEN": "short"},
            "GOVFLOW_SERVE_TOKEN: the reload token has 5 characters, at least 16",
        ),
        ({"GOVFLOW_SERVE_TOKEN": "has spaces in the middle"}, "printable ASCII without spaces"),
        ({"GOVFLOW_SERVE_TOKEN": "ŧøķëñŧøķëñŧøķëñŧøķëñ"}, "printable ASCII without spaces"),
        ({"GOVFLOW_SERVE_TOKEN": "{{ $GOVFLOW_SERVE_TOKEN }}"}, "template that was never filled in"),
        ({"GOVFLOW_SERVE_TOKEN_FILE": "/nonexistent/token"}, "GOVFLOW_SERVE_TOKEN_FILE: cannot read"),
    ],
)
def test_a_bad_token_setting_is_one_line(monkeypatch, setting: dict[str, str], message: str) -> None:
    from deployments.reload_token import configured_token

    monkeypatch.delenv("GOVFLOW_SERVE_TOKEN", raising=False)
    monkeypatch.delenv("GOVFLOW_SERVE_TOKEN_FILE", raising=False)
    for key, value in setting.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        configured_token()
