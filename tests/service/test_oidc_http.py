"""Single sign-on through the server: an OIDC JWT names the principal, its groups give the roles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from registry import errors
from registry.auth.authenticate import Authenticator, OIDCConfig
from registry.remote import RemoteRegistry
from tests.auth import jwks_server as js

ROLE_MAP = {"risk": ["approver"], "ml-eng": ["pipeline"]}


@pytest.fixture
def sso(team: dict[str, Any], registry_server: Any) -> Iterator[dict[str, Any]]:
    key = js.rsa_key()
    jwks = js.JWKSServer([js.public_jwk(key, "k1")])
    config = OIDCConfig(issuer=js.ISSUER, audience=js.AUDIENCE, jwks_url=jwks.url, role_map=ROLE_MAP)
    state = registry_server.app.state
    saved = state.authenticator
    state.authenticator = Authenticator(registry_server.registry.db, config)
    try:
        yield {"key": key, **team}
    finally:
        state.authenticator = saved
        jwks.close()


def test_an_sso_approver_approves_as_the_token_names(sso: dict[str, Any], registry_server: Any) -> None:
    jwt = js.sign(sso["key"], preferred_username="maria", groups=["risk"])
    maria = RemoteRegistry(registry_server.url, token=jwt)
    decision = maria.approve("churn", 1, reason="validated")
    assert decision.actor == "maria"
    event = maria.audit_log("churn")[-1]
    assert event.payload["via"] == {"channel": "api", "principal": "maria"}


def test_sso_roles_come_from_groups_only(sso: dict[str, Any], registry_server: Any, unchanged: Any) -> None:
    jwt = js.sign(sso["key"], preferred_username="dev", groups=["ml-eng"])
    with unchanged(), pytest.raises(errors.Forbidden):
        RemoteRegistry(registry_server.url, token=jwt).approve("churn", 1)


def test_a_jwt_signed_by_another_key_is_refused(
    sso: dict[str, Any], registry_server: Any, unchanged: Any
) -> None:
    forged = js.sign(js.rsa_key(), preferred_username="maria", groups=["risk"])
    with unchanged(), pytest.raises(errors.Unauthenticated):
        RemoteRegistry(registry_server.url, token=forged).approve("churn", 1)


def test_an_sso_name_spelled_like_the_registrant_cannot_approve(
    sso: dict[str, Any], registry_server: Any, unchanged: Any
) -> None:
    jwt = js.sign(sso["key"], preferred_username="ＢＯＢ", groups=["risk"])
    with unchanged(), pytest.raises(errors.SeparationOfDuties):
        RemoteRegistry(registry_server.url, token=jwt).approve("churn", 1)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cаrol", r"^JWT claim preferred_username: 'cаrol' mixes scripts \(Cyrillic, Latin\)"),
        ("ꓚarol", r"^JWT claim preferred_username: 'ꓚarol' mixes scripts \(Latin, Lisu\)"),
        ("ВОВ", r"^JWT claim preferred_username: 'ВОВ' looks like the user 'bob'"),
        ("аlice", r"^JWT claim preferred_username: 'аlice' mixes scripts"),
    ],
)
def test_an_sso_name_that_could_pass_for_someone_is_refused(
    sso: dict[str, Any], registry_server: Any, unchanged: Any, name: str, message: str
) -> None:
    jwt = js.sign(sso["key"], preferred_username=name, groups=["risk"])
    with unchanged(), pytest.raises(errors.Unauthenticated, match=message):
        RemoteRegistry(registry_server.url, token=jwt).approve("churn", 1)
