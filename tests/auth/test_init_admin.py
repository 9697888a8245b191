"""The first admin: created only on an empty users table, token written 0600, all or nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from registry.auth import admin
from registry.auth.admin import init_admin
from registry.auth.authenticate import Authenticator
from registry.db import Database
from registry.errors import InvalidInput, Refused
from tests.auth.conftest import UserRegistry


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_a_0600_token_that_authenticates_as_admin(users_reg: UserRegistry, tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    old = os.umask(0)  # a careless umask must not widen the file
    try:
        new = init_admin(users_reg, "root", path)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert path.read_text() == new.token + "\n"
    principal = Authenticator(users_reg.db).authenticate(f"Bearer {path.read_text().strip()}")
    assert principal.name == "root" and principal.roles == frozenset({"admin"})
    [event] = [e for e in users_reg.audit_log() if e.action == "user.added"]
    assert event.payload["roles"] == ["admin"] and new.token not in str(event.payload)


def test_refuses_a_second_time_and_leaves_no_file(users_reg: UserRegistry, tmp_path: Path) -> None:
    init_admin(users_reg, "root", tmp_path / "one.token")
    with pytest.raises(Refused, match="users already exist"):
        init_admin(users_reg, "other", tmp_path / "two.token")
    assert not (tmp_path / "two.token").exists()
    assert [u.name for u in users_reg.list_users()] == ["root"]


def test_refuses_when_any_user_exists_even_revoked(users_reg: UserRegistry, tmp_path: Path) -> None:
    users_reg.add_user("bob", ["reader"])
    users_reg.revoke_user("bob")
    with pytest.raises(Refused):
        init_admin(users_reg, "root", tmp_path / "admin.token")
    assert not (tmp_path / "admin.token").exists()


def test_refuses_an_existing_file_and_leaves_it_alone(users_reg: UserRegistry, tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("keep me")
    with pytest.raises(InvalidInput, match="already exists") as info:
        init_admin(users_reg, "root", path)
    assert info.value.field == "token_file"
    assert path.read_text() == "keep me" and users_reg.list_users() == []


def test_refuses_a_symlink_and_never_writes_through_it(users_reg: UserRegistry, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "admin.token"
    link.symlink_to(target)
    with pytest.raises(InvalidInput, match="already exists"):
        init_admin(users_reg, "root", link)
    assert not target.exists() and users_reg.list_users() == []


def test_a_missing_folder_is_refused_naming_the_token_file(users_reg: UserRegistry, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="token file: cannot create") as info:
        init_admin(users_reg, "root", tmp_path / "no" / "such" / "admin.token")
    assert info.value.field == "token_file" and users_reg.list_users() == []


def test_a_failed_write_leaves_neither_user_nor_file(
    users_reg: UserRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int, token: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(admin, "_write", full_disk)
    path = tmp_path / "admin.token"
    with pytest.raises(OSError):
        init_admin(users_reg, "root", path)
    assert not path.exists() and users_reg.list_users() == []
    assert not [e for e in users_reg.audit_log() if e.action.startswith("user.")]


@pytest.mark.parametrize("bad", ["root\u200b", "", "a\nb"])
def test_a_bad_name_is_refused_before_any_file_is_made(
    users_reg: UserRegistry, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        init_admin(users_reg, bad, tmp_path / "admin.token")
    assert info.value.field == "name" and not (tmp_path / "admin.token").exists()


def test_works_on_a_bare_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVFLOW_ACTOR", "ops")
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        new = init_admin(db, "root", tmp_path / "admin.token")
        assert Authenticator(db).authenticate(f"Bearer {new.token}").roles == frozenset({"admin"})
    finally:
        db.dispose()


def _race(url: str, folder: str, index: int) -> str:
    from registry.auth.admin import init_admin
    from registry.db import Database

    db = Database(url)
    try:
        init_admin(db, f"admin{index}", Path(folder) / f"{index}.token")
        return "made"
    except Refused:
        return "refused"
    finally:
        db.dispose()


def test_concurrent_bootstraps_make_exactly_one_admin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    monkeypatch.setenv("GOVFLOW_ACTOR", "ops")
    url = f"sqlite:///{tmp_path / 'race.db'}"
    init = Database(url)
    from registry.db.migrate import ensure_schema

    ensure_schema(init)  # the schema first, so the processes race only for the first admin
    init.dispose()
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(_race, [(url, str(tmp_path), i) for i in range(3)])
    assert sorted(results) == ["made", "refused", "refused"]
    files = sorted(p.name for p in tmp_path.glob("*.token"))
    assert len(files) == 1
    winner = files[0].split(".")[0]
    db = Database(url)
    try:
        token = (tmp_path / files[0]).read_text().strip()
        assert Authenticator(db).authenticate(f"Bearer {token}").name == f"admin{winner}"
    finally:
        db.dispose()
