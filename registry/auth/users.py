"""The users table: add, list, revoke, rotate, and find a user by token id.

Functions take a connection inside the caller's write transaction and an ``append`` callable
that writes the audit event in that same transaction. ``issued`` lets the caller run the slow
scrypt hash before taking the write lock. Audit payloads carry the name and roles,
never token material.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from registry import names
from registry.auth import tokens
from registry.auth.entities import NewToken, UserInfo
from registry.db.tables import users
from registry.errors import InvalidInput, NotFound, Refused
from registry.identity import ROLES
from registry.validate import actor_key, check_actor

Append = Callable[[Connection, datetime, str, str, None, None, dict[str, Any]], Any]
MAX_LIFETIME = timedelta(days=3650)


def check_roles(roles: Any) -> list[str]:
    """A list of known roles, at least one, in the canonical order; refuses anything else."""
    if isinstance(roles, str) or not isinstance(roles, Sequence | set | frozenset):
        raise InvalidInput(f"roles: {roles!r} must be a list of role names", field="roles")
    given = list(roles)
    if not given:
        raise InvalidInput(f"roles: at least one is needed ({', '.join(ROLES)})", field="roles")
    for role in given:
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidInput(f"roles: {role!r} is not one of {', '.join(ROLES)}", field="roles")
    return [role for role in ROLES if role in given]


def check_lifetime(expires_in: Any) -> timedelta | None:
    """A token lifetime: None (no expiry) or a positive timedelta up to ten years."""
    if expires_in is None:
        return None
    if not isinstance(expires_in, timedelta):
        raise InvalidInput(f"expires_in: {expires_in!r} must be a duration (timedelta)", field="expires_in")
    if expires_in <= timedelta(0) or expires_in > MAX_LIFETIME:
        raise InvalidInput(
            f"expires_in: {expires_in} must be positive and at most 10 years", field="expires_in"
        )
    return expires_in


def _row_by_name(conn: Connection, name: Any) -> Row[Any]:
    key = actor_key(check_actor(name, "name"))
    row = conn.execute(sa.select(users).where(users.c.name_key == key)).first()
    if row is None:
        raise NotFound(f"name: no user named {name!r}")
    return row


def refuse_lookalike(conn: Connection, name: str, field: str) -> None:
    """Refuse ``name`` when it looks like a user's name (revoked ones too) without being it.

    Looks are UTS #39 confusable skeletons (``registry.names``): ``сі`` beside ``ci``, ``BiIl``
    beside ``Bill``. Read inside the write transaction, which holds the write lock, so two
    look-alikes cannot be added at once.
    """
    names.refuse_lookalike(name, conn.execute(sa.select(users.c.name)).scalars(), field=field, kind="user")


def _info(row: Row[Any], at: datetime) -> UserInfo:
    expired = row.expires_at is not None and row.expires_at <= at
    return UserInfo(
        name=row.name,
        roles=list(row.roles),
        created_at=row.created_at,
        created_by=row.created_by,
        rotated_at=row.rotated_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        active=row.revoked_at is None and not expired,
    )


def add(
    conn: Connection,
    name: Any,
    roles: Any,
    *,
    actor: str,
    at: datetime,
    append: Append,
    expires_in: timedelta | None = None,
    issued: tokens.IssuedToken | None = None,
) -> NewToken:
    """Add a user with a new token; refuses a bad name or role, and a name that is or looks like an
    existing user's (NFKC and case folding, then UTS #39 confusable skeletons)."""
    name = check_actor(name, "name")
    roles = check_roles(roles)
    lifetime = check_lifetime(expires_in)
    key = actor_key(name)
    existing = conn.execute(sa.select(users.c.name).where(users.c.name_key == key)).scalar_one_or_none()
    if existing is not None:
        raise InvalidInput(
            f"name: {name!r} is the existing user {existing!r} (names compare after NFKC and case folding)",
            field="name",
        )
    refuse_lookalike(conn, name, "name")
    issued = issued or tokens.issue()
    conn.execute(
        users.insert().values(
            name=name,
            name_key=key,
            roles=roles,
            token_id=issued.token_id,
            token_hash=issued.hash,
            token_salt=issued.salt,
            created_at=at,
            created_by=actor,
            expires_at=at + lifetime if lifetime else None,
        )
    )
    append(conn, at, actor, "user.added", None, None, {"name": name, "roles": roles})
    return NewToken(name=name, roles=roles, token=issued.token)


def list_all(conn: Connection, at: datetime) -> list[UserInfo]:
    """Every user, oldest first."""
    rows = conn.execute(sa.select(users).order_by(users.c.id)).all()
    return [_info(row, at) for row in rows]


def count(conn: Connection) -> int:
    """How many users exist (revoked ones included)."""
    return conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one()


def revoke(conn: Connection, name: Any, *, actor: str, at: datetime, append: Append) -> UserInfo:
    """Revoke a user's token at once.

    Refuses an unknown or already revoked user, and the last active admin (nobody could manage
    users after it).
    """
    row = _row_by_name(conn, name)
    if row.revoked_at is not None:
        raise Refused(f"name: user {row.name!r} is already revoked")
    if "admin" in row.roles and _active_admins(conn, at) == {row.id}:
        raise Refused(
            f"name: {row.name!r} is the last active admin; add another admin first (or rotate its token)"
        )
    conn.execute(users.update().where(users.c.id == row.id).values(revoked_at=at))
    append(conn, at, actor, "user.revoked", None, None, {"name": row.name, "roles": list(row.roles)})
    return _info(conn.execute(sa.select(users).where(users.c.id == row.id)).one(), at)


def _active_admins(conn: Connection, at: datetime) -> set[int]:
    rows = conn.execute(
        sa.select(users.c.id, users.c.roles, users.c.expires_at).where(users.c.revoked_at.is_(None))
    ).all()
    return {r.id for r in rows if "admin" in r.roles and (r.expires_at is None or r.expires_at > at)}


def rotate(
    conn: Connection,
    name: Any,
    *,
    actor: str,
    at: datetime,
    append: Append,
    issued: tokens.IssuedToken | None = None,
) -> NewToken:
    """Replace a user's token; the old one stops working at once.

    A token with an expiry gets the same lifetime again, counted from now. Refuses an unknown
    or revoked user (a revoked user stays revoked; add a new one).
    """
    row = _row_by_name(conn, name)
    if row.revoked_at is not None:
        raise Refused(f"name: user {row.name!r} is revoked; add a new user instead")
    expires_at = None
    if row.expires_at is not None:
        expires_at = at + (row.expires_at - (row.rotated_at or row.created_at))
    issued = issued or tokens.issue()
    conn.execute(
        users.update()
        .where(users.c.id == row.id)
        .values(
            token_id=issued.token_id,
            token_hash=issued.hash,
            token_salt=issued.salt,
            rotated_at=at,
            expires_at=expires_at,
        )
    )
    roles = list(row.roles)
    append(conn, at, actor, "user.rotated", None, None, {"name": row.name, "roles": roles})
    return NewToken(name=row.name, roles=roles, token=issued.token)


def by_token_id(conn: Connection, token_id: str) -> Row[Any] | None:
    """The user row holding ``token_id`` (one indexed query), or None."""
    return conn.execute(
        sa.select(
            users.c.name,
            users.c.roles,
            users.c.token_id,
            users.c.token_hash,
            users.c.token_salt,
            users.c.expires_at,
            users.c.revoked_at,
        ).where(users.c.token_id == token_id)
    ).first()
