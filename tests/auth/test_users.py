"""User administration: add, list, revoke, rotate; look-alike names, roles, permissions, audit."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from registry import identity
from registry.errors import Forbidden, InvalidInput, NotFound, Refused
from registry.identity import Caller
from tests.auth.conftest import UserRegistry


def _user_events(reg: UserRegistry) -> list:
    return [e for e in reg.audit_log() if e.action.startswith("user.")]


def test_add_list_revoke_rotate_are_audited_without_token_material(users_reg: UserRegistry) -> None:
    bob = users_reg.add_user("bob", ["reader", "pipeline"])
    assert bob.name == "bob" and bob.roles == ["reader", "pipeline"] and bob.token.startswith("gft_")
    new = users_reg.rotate_user("bob")
    assert new.token != bob.token and new.roles == bob.roles
    info = users_reg.revoke_user("bob")
    assert info.revoked_at is not None and not info.active
    events = _user_events(users_reg)
    assert [e.action for e in events] == ["user.added", "user.rotated", "user.revoked"]
    for event in events:
        assert event.actor == "root"
        assert {k: v for k, v in event.payload.items() if k != "via"} == {
            "name": "bob",
            "roles": ["reader", "pipeline"],
        }
        text = repr(event.model_dump())
        for token in (bob.token, new.token):
            assert token not in text and token[21:] not in text
    assert users_reg.verify_audit().ok


def test_roles_are_kept_in_canonical_order_without_duplicates(users_reg: UserRegistry) -> None:
    new = users_reg.add_user("carol", ["admin", "reader", "admin"])
    assert new.roles == ["reader", "admin"]
    [info] = users_reg.list_users()
    assert info.roles == ["reader", "admin"] and info.active and info.created_by == "root"
    assert "token" not in info.model_dump()


@pytest.mark.parametrize("lookalike", ["bob", "BOB", "ｂｏｂ", "Ｂob", " bob "])
def test_lookalike_duplicate_names_are_refused_naming_the_existing_user(
    users_reg: UserRegistry, lookalike: str
) -> None:
    users_reg.add_user("Bob", ["reader"])
    with pytest.raises(InvalidInput, match="existing user 'Bob'") as info:
        users_reg.add_user(lookalike, ["approver"])
    assert info.value.field == "name"
    assert [u.name for u in users_reg.list_users()] == ["Bob"]


@pytest.mark.parametrize("bad", ["bob\u200b", "b\u200dob", "bob\n", "bo\x00b", "", "x" * 129, 7, None])
def test_bad_names_are_refused(users_reg: UserRegistry, bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        users_reg.add_user(bad, ["reader"])  # type: ignore[arg-type]
    assert info.value.field == "name"
    assert users_reg.list_users() == [] and _user_events(users_reg) == []


@pytest.mark.parametrize("bad", ["admin", [], ["root"], ["Admin"], [1], None, ["reader", "sudo"], b"admin"])
def test_bad_roles_are_refused_and_nothing_is_written(users_reg: UserRegistry, bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        users_reg.add_user("dave", bad)  # type: ignore[arg-type]
    assert info.value.field == "roles"
    assert users_reg.list_users() == [] and _user_events(users_reg) == []


@pytest.mark.parametrize("bad", ["30d", 30, timedelta(0), timedelta(seconds=-1), timedelta(days=4000)])
def test_bad_lifetimes_are_refused(users_reg: UserRegistry, bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        users_reg.add_user("erin", ["reader"], expires_in=bad)  # type: ignore[arg-type]
    assert info.value.field == "expires_in"
    assert users_reg.list_users() == []


def test_expiry_is_listed_and_rotation_renews_the_same_lifetime(users_reg: UserRegistry) -> None:
    users_reg.add_user("frank", ["reader"], expires_in=timedelta(days=30))
    [before] = users_reg.list_users()
    assert before.expires_at - before.created_at == timedelta(days=30)
    users_reg.rotate_user("frank")
    [after] = users_reg.list_users()
    assert after.expires_at - after.rotated_at == timedelta(days=30)
    assert after.expires_at > before.expires_at


def test_unknown_revoked_and_repeated_operations_are_refused(users_reg: UserRegistry) -> None:
    with pytest.raises(NotFound, match="no user named 'ghost'"):
        users_reg.revoke_user("ghost")
    with pytest.raises(NotFound):
        users_reg.rotate_user("ghost")
    users_reg.add_user("gina", ["reader"])
    info = users_reg.revoke_user("ＧＩＮＡ")  # the same user under NFKC + case folding
    assert info.name == "gina"
    with pytest.raises(Refused, match="already revoked"):
        users_reg.revoke_user("gina")
    with pytest.raises(Refused, match="revoked"):
        users_reg.rotate_user("gina")
    assert [e.action for e in _user_events(users_reg)] == ["user.added", "user.revoked"]


@pytest.mark.parametrize("roles", [{"operator"}, {"approver", "pipeline", "reader", "operator"}])
def test_only_admins_manage_users(users_reg: UserRegistry, roles: set[str]) -> None:
    users_reg.add_user("hank", ["reader"])
    with identity.acting(Caller(channel="api", principal="ops", roles=frozenset(roles))):
        for call in (
            lambda: users_reg.add_user("ivan", ["admin"]),
            users_reg.list_users,
            lambda: users_reg.revoke_user("hank"),
            lambda: users_reg.rotate_user("hank"),
        ):
            with pytest.raises(Forbidden) as info:
                call()
            assert info.value.field == "role" and "admin" in str(info.value)
    assert [u.name for u in users_reg.list_users()] == ["hank"]
    assert len(_user_events(users_reg)) == 1


def test_an_authenticated_admin_is_the_recorded_actor(users_reg: UserRegistry) -> None:
    with identity.acting(Caller(channel="cli", principal="Alice", roles=frozenset({"admin"}))):
        users_reg.add_user("judy", ["approver"])
    [info] = users_reg.list_users()
    assert info.created_by == "Alice"
    [event] = _user_events(users_reg)
    assert event.actor == "Alice"
    assert event.payload["via"] == {"channel": "cli", "principal": "Alice"}


def test_no_token_is_stored_in_clear(users_reg: UserRegistry, tmp_path: Path) -> None:
    issued = [users_reg.add_user(f"user{i}", ["reader"]).token for i in range(3)]
    issued.append(users_reg.rotate_user("user0").token)
    users_reg.revoke_user("user1")
    users_reg.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("registry.db")]
    assert files
    blob = b"".join(p.read_bytes() for p in files)
    assert b"user0" in blob  # the scan does see the table's contents
    for token in issued:
        secret = token[21:]
        assert token.encode() not in blob and secret.encode() not in blob


def test_equal_secrets_hash_differently_per_user(users_reg: UserRegistry) -> None:
    import sqlalchemy as sa

    from registry.auth import tokens
    from registry.db.tables import users

    users_reg.add_user("kim", ["reader"])
    users_reg.add_user("lee", ["reader"])
    with users_reg.db.read() as conn:
        rows = conn.execute(sa.select(users.c.token_salt, users.c.token_hash)).all()
    assert rows[0].token_salt != rows[1].token_salt and rows[0].token_hash != rows[1].token_hash
    same = "gft_0123456789abcdef_" + "s" * 43
    assert tokens.hash_token(same, rows[0].token_salt) != tokens.hash_token(same, rows[1].token_salt)


def test_the_last_active_admin_cannot_be_revoked(users_reg: UserRegistry) -> None:
    users_reg.add_user("root", ["admin"])
    users_reg.add_user("old", ["admin"], expires_in=timedelta(days=1))
    users_reg.add_user("reader", ["reader"])
    users_reg.revoke_user("reader")  # not an admin: no guard
    import sqlalchemy as sa

    from registry.db.tables import users

    with users_reg.db.engine.begin() as conn:  # "old" has expired: it manages nothing
        conn.execute(
            users.update().where(users.c.name == "old").values(expires_at=sa.func.current_timestamp())
        )
    with pytest.raises(Refused, match="last active admin"):
        users_reg.revoke_user("root")
    users_reg.add_user("second", ["reader", "admin"])
    assert users_reg.revoke_user("root").active is False
    with pytest.raises(Refused, match="'second' is the last active admin"):
        users_reg.revoke_user("second")


def test_user_events_cannot_be_forged_through_record(users_reg: UserRegistry) -> None:
    for action in ("user.added", "user.revoked", "user.rotated"):
        with pytest.raises(InvalidInput, match="registry's own namespace"):
            users_reg.record(action, payload={"name": "mallory", "roles": ["admin"]})
    assert _user_events(users_reg) == []


# --- look-alikes from other scripts (issue 19): UTS #39 skeletons, on SQLite and PostgreSQL ------


@pytest.mark.parametrize(
    ("existing", "new", "message"),
    [
        ("carol", "cаrol", r"^name: 'cаrol' mixes scripts \(Cyrillic, Latin\)"),
        ("bob", "bοb", r"^name: 'bοb' mixes scripts \(Greek, Latin\)"),
        ("carol", "ꓚarol", r"^name: 'ꓚarol' mixes scripts \(Latin, Lisu\)"),
        ("dave", "Ꭰave", r"^name: 'Ꭰave' mixes scripts \(Cherokee, Latin\)"),
        ("ci", "сі", r"^name: 'сі' looks like the user 'ci' \(the same UTS #39 confusable skeleton\)$"),
        ("bob", "ВОВ", r"^name: 'ВОВ' looks like the user 'bob'"),
        ("dave", "ԁаѵе", r"^name: 'ԁаѵе' looks like the user 'dave'"),
        ("Bill", "BiIl", r"^name: 'BiIl' looks like the user 'Bill'"),
        ("carol", "caro1", r"^name: 'caro1' looks like the user 'carol'"),
    ],
)
def test_an_admin_cannot_add_a_look_alike_of_an_existing_user(
    any_users_reg: UserRegistry, existing: str, new: str, message: str
) -> None:
    any_users_reg.add_user(existing, ["approver"])
    events = _user_events(any_users_reg)
    with pytest.raises(InvalidInput, match=message) as info:
        any_users_reg.add_user(new, ["approver"])
    assert info.value.field == "name"
    assert [u.name for u in any_users_reg.list_users()] == [existing]
    assert _user_events(any_users_reg) == events


def test_a_revoked_user_still_keeps_its_look_alikes_out(users_reg: UserRegistry) -> None:
    users_reg.add_user("ci", ["pipeline"])
    users_reg.add_user("root", ["admin"])
    users_reg.revoke_user("ci")
    with pytest.raises(InvalidInput, match="looks like the user 'ci'"):
        users_reg.add_user("сі", ["pipeline"])


def test_people_with_names_in_other_scripts_are_distinct_users(any_users_reg: UserRegistry) -> None:
    names = ["maria", "мария", "eleni", "ελένη", "たなか太郎", "김민준", "عمر", "josé"]
    for name in names:
        any_users_reg.add_user(name, ["approver"])
    assert [u.name for u in any_users_reg.list_users()] == names
