"""One-time approval codes: an authenticated approver's approval, carried through a form.

A code is bound to the principal who asked for it, to one version and its review round; it is
valid for minutes and redeemed once. Only its sha256 is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from registry.db.tables import approval_codes, users
from registry.errors import InvalidInput, Refused
from registry.validate import actor_key

_CODE = re.compile(r"GF-([0-9a-f]{8})-([A-Za-z0-9_-]{16})")
MAX_VALID_FOR = 3600


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def issue(
    conn: Connection, principal: str, row: Row[Any], *, at: datetime, valid_for: int
) -> tuple[str, str]:
    """Store a new code for ``principal`` on this version's current review; return (code, code id)."""
    if isinstance(valid_for, bool) or not isinstance(valid_for, int) or not 30 <= valid_for <= MAX_VALID_FOR:
        raise InvalidInput(
            f"valid_for: {valid_for!r} must be whole seconds from 30 to {MAX_VALID_FOR}", field="valid_for"
        )
    code_id, secret = secrets.token_hex(4), secrets.token_urlsafe(12)
    conn.execute(
        approval_codes.insert(),
        {
            "code_id": code_id,
            "code_hash": _hash(secret),
            "principal": principal,
            "version_id": row.id,
            "review_round": row.review_round,
            "created_at": at,
            "expires_at": at + timedelta(seconds=valid_for),
        },
    )
    return f"GF-{code_id}-{secret}", code_id


def _not_an_approver_now(conn: Connection, principal: str, at: datetime) -> str | None:
    """Why a server user may no longer approve (revoked, expired, role taken away), or None.

    Embedded registries have no users: there the code's principal stands as issued.
    """
    user = conn.execute(
        sa.select(users.c.roles, users.c.revoked_at, users.c.expires_at).where(
            users.c.name_key == actor_key(principal)
        )
    ).first()
    if user is None:
        return None
    if user.revoked_at is not None:
        return "was revoked after asking for the code"
    if user.expires_at is not None and user.expires_at <= at:
        return "has expired"
    if not {"approver", "admin"} & set(user.roles or ()):
        return "no longer holds the approver role"
    return None


def redeem(conn: Connection, code: Any, row: Row[Any], ref: str, *, at: datetime) -> tuple[str, str]:
    """Spend ``code`` on this version now; return (principal, code id). Refuses every misuse."""
    match = _CODE.fullmatch(code.strip()) if isinstance(code, str) else None
    if match is None:
        raise InvalidInput("code: not an approval code (GF-xxxxxxxx-…)", field="code")
    code_id, secret = match[1], match[2]
    stored = conn.execute(sa.select(approval_codes).where(approval_codes.c.code_id == code_id)).first()
    if stored is None or not hmac.compare_digest(stored.code_hash, _hash(secret)):
        raise Refused("code: unknown approval code", model=row.model_name, version=row.version)
    if stored.used_at is not None:
        raise Refused(f"code: already used at {stored.used_at.isoformat()}", model=row.model_name)
    if stored.expires_at <= at:
        raise Refused(f"code: expired at {stored.expires_at.isoformat()}", model=row.model_name)
    if stored.version_id != row.id:
        raise Refused(f"code: issued for another version, not {ref}", model=row.model_name)
    if stored.review_round != row.review_round:
        raise Refused(f"code: issued in an earlier review of {ref}", model=row.model_name)
    why = _not_an_approver_now(conn, stored.principal, at)
    if why:
        raise Refused(f"code: {stored.principal} {why}", model=row.model_name)
    done = conn.execute(
        approval_codes.update()
        .where(approval_codes.c.code_id == code_id, approval_codes.c.used_at.is_(None))
        .values(used_at=at)
    )
    if done.rowcount != 1:
        raise Refused("code: already used", model=row.model_name)
    return stored.principal, code_id
