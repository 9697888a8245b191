"""OIDC bearer JWTs against a JWKS served on loopback, with locally generated keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from registry.auth.authenticate import Authenticator, Principal
from registry.auth.oidc import OIDCConfig, parse_role_map
from registry.db import Database
from registry.db.migrate import ensure_schema
from registry.errors import InvalidInput, Unauthenticated
from tests.auth import jwks_server as js

ROLE_MAP = {"risk": ["approver", "reader"], "ml-eng": ["pipeline"]}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"rsa": js.rsa_key(), "other": js.rsa_key(), "ec": js.ec_key()}


@pytest.fixture(scope="module")
def jwks(keys: dict[str, Any]) -> Iterator[js.JWKSServer]:
    server = js.JWKSServer([js.public_jwk(keys["rsa"], "k1"), js.public_jwk(keys["ec"], "e1")])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A registry database without users (JWT users have no row; the OIDC path reads the names)."""
    database = Database(f"sqlite:///{tmp_path_factory.mktemp('oidc') / 'registry.db'}")
    ensure_schema(database)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def auth(db: Database, jwks: js.JWKSServer) -> Authenticator:
    jwks.fetches = 0
    config = OIDCConfig(issuer=js.ISSUER, audience=js.AUDIENCE, jwks_url=jwks.url, role_map=ROLE_MAP)
    return Authenticator(db, config)


def _refused(auth: Authenticator, token: str, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message) as info:
        auth.authenticate(f"Bearer {token}")
    assert "\n" not in str(info.value)


def test_good_token_gives_principal_and_mapped_roles(auth: Authenticator, keys: dict[str, Any]) -> None:
    token = js.sign(keys["rsa"], groups=["risk", "ml-eng", "unmapped"])
    assert auth.authenticate(f"Bearer {token}") == Principal(
        name="alice", roles=frozenset({"approver", "reader", "pipeline"}), source="oidc"
    )


def test_es256_token_is_accepted(auth: Authenticator, keys: dict[str, Any]) -> None:
    token = js.sign(keys["ec"], kid="e1", alg="ES256", preferred_username="bob", groups=["ml-eng"])
    assert auth.authenticate(f"Bearer {token}").roles == frozenset({"pipeline"})


def test_jwks_is_fetched_once_for_many_requests(
    auth: Authenticator, keys: dict[str, Any], jwks: js.JWKSServer
) -> None:
    for _ in range(3):
        auth.authenticate(f"Bearer {js.sign(keys['rsa'])}")
    assert jwks.fetches == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "https://evil.example.test/realms/bank"}, "wrong issuer"),
        ({"iss": js.ISSUER + "/"}, "wrong issuer"),
        ({"aud": "other-app"}, "wrong audience"),
        ({"aud": ["other-app"]}, "wrong audience"),
        ({"exp": int(time.time()) - 120}, "token expired"),
        ({"nbf": int(time.time()) + 600}, "not yet valid"),
        ({"exp": None}, "claim 'exp' is missing"),
        ({"aud": None}, "claim 'aud' is missing"),
        ({"groups": None}, "'groups' is missing"),
        ({"groups": []}, "no group of alice maps to a role"),
        ({"groups": ["Risk", "risk "]}, "maps to a role"),
        ({"groups": "risk"}, "must be a list"),
        ({"groups": [["risk"]]}, "must be a list"),
        ({"preferred_username": None}, "preferred_username"),
        ({"preferred_username": "alice\u200b"}, "U\\+200B"),
        ({"preferred_username": 42}, "must be a string"),
    ],
)
def test_bad_claims_are_refused(
    auth: Authenticator, keys: dict[str, Any], overrides: dict[str, Any], message: str
) -> None:
    _refused(auth, js.sign(keys["rsa"], **overrides), message)


def test_signature_by_another_key_under_the_same_kid_is_refused(
    auth: Authenticator, keys: dict[str, Any]
) -> None:
    _refused(auth, js.sign(keys["other"], kid="k1"), "bad signature")


def test_tampered_payload_is_refused(auth: Authenticator, keys: dict[str, Any]) -> None:
    good = js.sign(keys["rsa"], groups=["ml-eng"])
    head, _, sig = good.split(".")
    forged_body = js.unsigned({}, js.claims(groups=["risk"])).split(".")[1]
    _refused(auth, f"{head}.{forged_body}.{sig}", "bad signature")


def test_unknown_kid_is_refused(auth: Authenticator, keys: dict[str, Any]) -> None:
    _refused(auth, js.sign(keys["other"], kid="k9"), "unknown kid")


def test_alg_none_is_refused(auth: Authenticator) -> None:
    _refused(
        auth, js.unsigned({"alg": "none", "typ": "JWT", "kid": "k1"}, js.claims()), "'none' is not accepted"
    )
    _refused(auth, js.unsigned({"alg": "None", "kid": "k1"}, js.claims()), "is not accepted")


def test_hs256_keyed_with_the_public_key_is_refused(auth: Authenticator, keys: dict[str, Any]) -> None:
    _refused(auth, js.hs256_with_public_key(keys["rsa"]), "'HS256' is not accepted")


def test_rs256_header_over_an_ec_key_is_refused(auth: Authenticator, keys: dict[str, Any]) -> None:
    token = js.sign(keys["ec"], kid="e1", alg="ES256")
    head = js.unsigned({"alg": "RS256", "kid": "e1"}, {}).split(".")[0]
    _, body, sig = token.split(".")
    with pytest.raises(Unauthenticated):
        auth.authenticate(f"Bearer {head}.{body}.{sig}")


@pytest.mark.parametrize("garbage", ["a.b.c", "..", "eyJhbGciOiJSUzI1NiJ9.e30.", "x" * 20000 + ".a.b"])
def test_malformed_jwts_are_refused(auth: Authenticator, garbage: str) -> None:
    _refused(auth, garbage, "JWT")


def test_unreachable_jwks_is_refused_with_one_line(db: Database, keys: dict[str, Any]) -> None:
    server = js.JWKSServer([])
    url = server.url
    server.close()
    config = OIDCConfig(issuer=js.ISSUER, audience=js.AUDIENCE, jwks_url=url, role_map=ROLE_MAP)
    _refused(Authenticator(db, config), js.sign(keys["rsa"]), "cannot fetch the signing keys")


def test_custom_principal_and_groups_claims(db: Database, jwks: js.JWKSServer, keys: dict) -> None:
    config = OIDCConfig(
        issuer=js.ISSUER,
        audience=js.AUDIENCE,
        jwks_url=jwks.url,
        principal_claim="email",
        groups_claim="roles",
        role_map={"approvers": ["approver"]},
    )
    token = js.sign(keys["rsa"], email="risk.officer@bank.test", roles=["approvers"])
    principal = Authenticator(db, config).authenticate(f"Bearer {token}")
    assert principal.name == "risk.officer@bank.test" and principal.roles == frozenset({"approver"})


# --- configuration ------------------------------------------------------------------------


def test_from_env_is_none_when_unset() -> None:
    assert OIDCConfig.from_env({}) is None
    assert OIDCConfig.from_env({"GOVFLOW_OIDC_ISSUER": "  "}) is None


def test_from_env_reads_every_setting() -> None:
    config = OIDCConfig.from_env(
        {
            "GOVFLOW_OIDC_ISSUER": js.ISSUER,
            "GOVFLOW_OIDC_AUDIENCE": "govflow",
            "GOVFLOW_OIDC_JWKS_URL": "https://sso.example.test/jwks",
            "GOVFLOW_OIDC_PRINCIPAL_CLAIM": "email",
            "GOVFLOW_OIDC_GROUPS_CLAIM": "roles",
            "GOVFLOW_OIDC_ROLES": "ml-eng=pipeline; risk=approver,reader ;",
        }
    )
    assert config is not None
    assert config.principal_claim == "email" and config.groups_claim == "roles"
    assert config.role_map == {"ml-eng": ["pipeline"], "risk": ["approver", "reader"]}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GOVFLOW_OIDC_AUDIENCE": ""}, "GOVFLOW_OIDC_AUDIENCE: must be set"),
        ({"GOVFLOW_OIDC_JWKS_URL": ""}, "GOVFLOW_OIDC_JWKS_URL: must be set"),
        ({"GOVFLOW_OIDC_JWKS_URL": "http://sso.example.test/jwks"}, "must be https"),
        ({"GOVFLOW_OIDC_JWKS_URL": "file:///etc/jwks.json"}, "must be https"),
        ({"GOVFLOW_OIDC_ROLES": ""}, "map at least one group"),
        ({"GOVFLOW_OIDC_ROLES": "risk=root"}, "'root' is not one of"),
        ({"GOVFLOW_OIDC_ROLES": "risk"}, "must be GROUP=ROLE"),
        ({"GOVFLOW_OIDC_ROLES": "risk="}, "must be GROUP=ROLE"),
        ({"GOVFLOW_OIDC_ROLES": "risk=reader;risk=admin"}, "given twice"),
    ],
)
def test_from_env_refuses_bad_settings(env: dict[str, str], message: str) -> None:
    base = {
        "GOVFLOW_OIDC_ISSUER": js.ISSUER,
        "GOVFLOW_OIDC_AUDIENCE": "govflow",
        "GOVFLOW_OIDC_JWKS_URL": "https://sso.example.test/jwks",
        "GOVFLOW_OIDC_ROLES": "risk=approver",
    }
    with pytest.raises(InvalidInput, match=message):
        OIDCConfig.from_env({**base, **env})


def test_loopback_http_jwks_is_allowed() -> None:
    for url in ("http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]:9/jwks"):
        OIDCConfig(issuer="i", audience="a", jwks_url=url, role_map={"g": ["reader"]})


def test_parse_role_map() -> None:
    assert parse_role_map("a=reader,admin;b=pipeline") == {"a": ["reader", "admin"], "b": ["pipeline"]}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("cаrol", r"mixes scripts \(Cyrillic, Latin\)"),
        ("bοb", r"mixes scripts \(Greek, Latin\)"),
        ("ciсі", r"mixes scripts \(Cyrillic, Latin\)"),
        ("ab١", r"mixes scripts \(Arabic, Latin\)"),
    ],
)
def test_a_mixed_script_principal_claim_is_refused(
    auth: Authenticator, keys: dict[str, Any], name: str, why: str
) -> None:
    _refused(auth, js.sign(keys["rsa"], preferred_username=name), f"^JWT claim preferred_username: '{name}' {why}")


def test_a_principal_claim_that_looks_like_a_token_user_is_refused(
    tmp_path: Any, jwks: js.JWKSServer, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.auth.conftest import open_user_registry

    monkeypatch.setenv("GOVFLOW_ACTOR", "root")
    reg = open_user_registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path)
    try:
        reg.add_user("bob", ["pipeline"])
        config = OIDCConfig(issuer=js.ISSUER, audience=js.AUDIENCE, jwks_url=jwks.url, role_map=ROLE_MAP)
        auth = Authenticator(reg.db, config)
        lookalike = js.sign(keys["rsa"], preferred_username="ВОВ")
        _refused(auth, lookalike, "^JWT claim preferred_username: 'ВОВ' looks like the user 'bob'")
        assert auth.authenticate(f"Bearer {js.sign(keys['rsa'], preferred_username='bob')}").name == "bob"
        assert auth.authenticate(f"Bearer {js.sign(keys['rsa'], preferred_username='мария')}").name == "мария"
    finally:
        reg.close()
