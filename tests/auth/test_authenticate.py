"""Authenticating API tokens: revocation, rotation and expiry bind at once, cache or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry.auth import tokens
from registry.auth.authenticate import Authenticator, Principal, bearer
from registry.db.tables import users
from registry.errors import Unauthenticated
from tests.auth.conftest import UserRegistry


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the slow hash checks the authenticator makes."""
    calls: list[str] = []
    real = tokens.verify

    def counting(token: str, salt: str, stored: str) -> bool:
        calls.append(token)
        return real(token, salt, stored)

    monkeypatch.setattr(tokens, "verify", counting)
    return calls


def _set(reg: UserRegistry, name: str, **values: object) -> None:
    with reg.db.engine.begin() as conn:
        conn.execute(users.update().where(users.c.name == name).values(**values))


class TestTokensOnEachBackend:
    """The token path on SQLite and PostgreSQL."""

    def test_good_token_gives_the_principal_and_roles(self, any_users_reg: UserRegistry) -> None:
        new = any_users_reg.add_user("Bob", ["pipeline", "reader"])
        auth = Authenticator(any_users_reg.db)
        assert auth.authenticate(f"Bearer {new.token}") == Principal(
            name="Bob", roles=frozenset({"pipeline", "reader"}), source="token"
        )
        assert auth.authenticate(f"bearer   {new.token}  ").name == "Bob"

    def test_revoke_binds_on_the_next_request_after_a_cached_success(
        self, any_users_reg: UserRegistry, scrypt_calls: list[str]
    ) -> None:
        new = any_users_reg.add_user("bob", ["approver"])
        auth = Authenticator(any_users_reg.db)
        auth.authenticate(f"Bearer {new.token}")
        auth.authenticate(f"Bearer {new.token}")
        assert len(scrypt_calls) == 1  # the second request skipped scrypt
        any_users_reg.revoke_user("bob")
        with pytest.raises(Unauthenticated, match="token revoked"):
            auth.authenticate(f"Bearer {new.token}")

    def test_rotate_binds_on_the_next_request_after_a_cached_success(
        self, any_users_reg: UserRegistry
    ) -> None:
        old = any_users_reg.add_user("carol", ["operator"])
        auth = Authenticator(any_users_reg.db)
        auth.authenticate(f"Bearer {old.token}")
        new = any_users_reg.rotate_user("carol")
        with pytest.raises(Unauthenticated, match="not recognized"):
            auth.authenticate(f"Bearer {old.token}")
        assert auth.authenticate(f"Bearer {new.token}").roles == frozenset({"operator"})

    def test_expired_token_is_refused_even_after_a_cached_success(self, any_users_reg: UserRegistry) -> None:
        new = any_users_reg.add_user("dave", ["reader"], expires_in=timedelta(days=1))
        auth = Authenticator(any_users_reg.db)
        assert auth.authenticate(f"Bearer {new.token}").name == "dave"
        _set(any_users_reg, "dave", expires_at=datetime.now(UTC) - timedelta(seconds=1))
        with pytest.raises(Unauthenticated, match="token expired"):
            auth.authenticate(f"Bearer {new.token}")
        with pytest.raises(Unauthenticated, match="token expired"):
            Authenticator(any_users_reg.db).authenticate(f"Bearer {new.token}")


def test_wrong_secret_with_a_real_token_id_is_refused_and_not_cached(
    users_reg: UserRegistry, scrypt_calls: list[str]
) -> None:
    new = users_reg.add_user("erin", ["reader"])
    auth = Authenticator(users_reg.db)
    forged = new.token[:-4] + ("AAAA" if not new.token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="bad secret"):
            auth.authenticate(f"Bearer {forged}")
    assert len(scrypt_calls) == 2
    assert auth.authenticate(f"Bearer {new.token}").name == "erin"


def test_cache_does_not_outlive_a_changed_stored_hash(users_reg: UserRegistry) -> None:
    new = users_reg.add_user("fay", ["reader"])
    auth = Authenticator(users_reg.db)
    auth.authenticate(f"Bearer {new.token}")
    other = tokens.issue()
    _set(users_reg, "fay", token_salt=other.salt, token_hash=other.hash)
    with pytest.raises(Unauthenticated, match="bad secret"):
        auth.authenticate(f"Bearer {new.token}")


def test_unknown_token_is_refused(users_reg: UserRegistry) -> None:
    with pytest.raises(Unauthenticated, match="not recognized"):
        Authenticator(users_reg.db).authenticate(f"Bearer {tokens.issue().token}")


def test_roles_outside_the_known_set_in_the_row_grant_nothing(users_reg: UserRegistry) -> None:
    new = users_reg.add_user("gus", ["reader"])
    _set(users_reg, "gus", roles=["reader", "superuser"])
    assert Authenticator(users_reg.db).authenticate(f"Bearer {new.token}").roles == frozenset({"reader"})


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "no credential: send Authorization: Bearer <token>"),
        ("", "no credential"),
        ("   ", "no credential"),
        ("Bearer", "no credential"),
        ("Bearer    ", "no credential"),
        ("Basic dXNlcjpwYXNz", "only the Bearer scheme"),
        ("Token gft_x", "only the Bearer scheme"),
        ("Bearer a b", "must not contain spaces"),
        ("Bearer gft_0123456789abcdef_short", "malformed"),
        ("Bearer not-a-credential", "neither an API token"),
        ("Bearer a.b.c", "OIDC is not configured"),
        (b"Bearer x", "must be text"),
    ],
)
def test_bad_headers_are_refused_with_one_line(users_reg: UserRegistry, header: object, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message) as info:
        Authenticator(users_reg.db).authenticate(header)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_a_raw_token_without_the_bearer_scheme_is_refused(users_reg: UserRegistry) -> None:
    new = users_reg.add_user("hal", ["reader"])
    with pytest.raises(Unauthenticated, match="Bearer"):
        Authenticator(users_reg.db).authenticate(new.token)


def test_bearer_returns_the_credential() -> None:
    assert bearer("Bearer gft_abc") == "gft_abc"
    assert bearer("BEARER x.y.z") == "x.y.z"


def test_a_token_of_a_mixed_script_user_from_before_the_check_is_refused(any_users_reg: UserRegistry) -> None:
    new = any_users_reg.add_user("carol", ["approver"])
    with any_users_reg.db.engine.begin() as conn:  # as an older release could store it
        conn.execute(users.update().where(users.c.name == "carol").values(name="cаrol", name_key="cаrol"))
    with pytest.raises(Unauthenticated, match=r"^token: principal: 'cаrol' mixes scripts \(Cyrillic, Latin\)"):
        Authenticator(any_users_reg.db).authenticate(f"Bearer {new.token}")
