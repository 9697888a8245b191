"""User administration on the registry, and the first admin of a new server.

``UserAdmin`` is a ``Registry`` mixin: every method needs the ``users`` permission (admin) and
runs as one transaction with its audit event. ``init_admin`` bootstraps a server that has no
user yet and writes the token to a file only its owner can read.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from registry import audit, identity
from registry.auth import tokens, users
from registry.auth.entities import NewToken, UserInfo
from registry.base import RegistryBase, now
from registry.db import Database
from registry.db.migrate import ensure_schema
from registry.errors import InvalidInput, Refused
from registry.validate import check_actor


class UserAdmin(RegistryBase):
    """API users of the registry server: add, list, revoke, rotate."""

    def add_user(self, name: str, roles: list[str], *, expires_in: timedelta | None = None) -> NewToken:
        """Add a user and return its token (shown once).

        Refuses a name with control or zero-width characters, one that mixes scripts (``cаrol``),
        the name or a look-alike of an existing user (``Bob`` = ``ｂｏｂ``; ``сі`` looks like ``ci``),
        an unknown role, an empty role list and a non-positive lifetime.
        """
        identity.require("users", "add users")
        who = identity.actor_for(None)
        check_actor(name, "name")
        users.check_roles(roles)
        users.check_lifetime(expires_in)
        issued = tokens.issue()  # scrypt before the write lock
        at = now()
        return self.db.transact(
            lambda conn: users.add(
                conn, name, roles, actor=who, at=at, append=self._audit, expires_in=expires_in, issued=issued
            )
        )

    def list_users(self) -> list[UserInfo]:
        """Every user, oldest first, without token material."""
        identity.require("users", "list users")
        with self.db.read() as conn:
            return users.list_all(conn, now())

    def revoke_user(self, name: str) -> UserInfo:
        """Revoke a user: its token is refused from the next request on."""
        identity.require("users", "revoke users")
        who = identity.actor_for(None)
        at = now()
        return self.db.transact(lambda conn: users.revoke(conn, name, actor=who, at=at, append=self._audit))

    def rotate_user(self, name: str) -> NewToken:
        """Give a user a new token; the old one is refused from the next request on."""
        identity.require("users", "rotate tokens")
        who = identity.actor_for(None)
        issued = tokens.issue()
        at = now()
        return self.db.transact(
            lambda conn: users.rotate(conn, name, actor=who, at=at, append=self._audit, issued=issued)
        )


def init_admin(registry_or_db: RegistryBase | Database, name: str, token_file: Path | str) -> NewToken:
    """Create the first admin of an empty users table and write its token to ``token_file``.

    The file is created with mode 0600 and must not exist. Refuses when any user exists. Either
    both the user and the file are there afterwards, or neither is.
    """
    if isinstance(registry_or_db, RegistryBase):
        db = registry_or_db.db
        append: Any = registry_or_db._audit
    else:
        db = registry_or_db
        ensure_schema(db)

        def append(
            conn: Connection, at: Any, actor: str, action: str, model: Any, version: Any, payload: Any
        ) -> Any:
            body = {**payload, "via": identity.current().via()}
            return audit.append(
                conn,
                at=at,
                actor=actor,
                action=action,
                model=model,
                version=version,
                payload=body,
                db_user=db.db_user,
            )

    check_actor(name, "name")
    who = identity.actor_for(None)
    issued = tokens.issue()
    path = Path(token_file)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise InvalidInput(
            f"token file: {path} already exists; choose a new path", field="token_file"
        ) from None
    except OSError as exc:
        raise InvalidInput(
            f"token file: cannot create {path}: {exc.strerror or exc}", field="token_file"
        ) from None

    def work(conn: Connection) -> NewToken:
        if users.count(conn) > 0:
            raise Refused("init-admin: users already exist; an admin adds more with `govflow users add`")
        new = users.add(conn, name, ["admin"], actor=who, at=now(), append=append, issued=issued)
        _write(fd, new.token)  # before commit: a failed write rolls the user back
        return new

    try:
        os.fchmod(fd, 0o600)
        new = db.transact(work)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return new


def _write(fd: int, token: str) -> None:
    # A retried transaction writes again from the start.
    os.ftruncate(fd, 0)
    data = (token + "\n").encode("ascii")
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], written)
    os.fsync(fd)
