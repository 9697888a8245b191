"""The policy kept in the registry: every document by sha256, and the history of which was in force.

The policy in force is the latest ``policy_history`` row. Decisions read it inside their own
transaction and record its sha256; a caller's file only seeds an empty registry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.canonical import canonical
from registry.db.tables import policies, policy_history
from registry.entities import PolicyInfo
from registry.errors import IntegrityError
from registry.policy import Policy

Append = Callable[[Connection, datetime, str, str, str | None, int | None, dict[str, Any]], Any]

_KNOWN = sa.select(policies.c.sha256).where(policies.c.sha256 == sa.bindparam("s"))
_CURRENT = (
    sa.select(policy_history.c.sha256, policies.c.document)
    .join(policies, policies.c.sha256 == policy_history.c.sha256)
    .order_by(policy_history.c.id.desc())
    .limit(1)
)
_DOCUMENT = sa.select(policies.c.document).where(policies.c.sha256 == sa.bindparam("s"))
# Parsed policies by sha256: a stored document never changes under its digest.
_PARSED: dict[str, Policy] = {}


def digest(policy: Policy) -> tuple[str, dict[str, Any]]:
    """(sha256 of the canonical JSON, the JSON document) of a policy."""
    document = json.loads(canonical(policy.model_dump(mode="json")))
    return hashlib.sha256(canonical(document)).hexdigest(), document


def ensure_recorded(conn: Connection, policy: Policy, *, actor: str, at: datetime, append: Append) -> str:
    """Record ``policy`` (with a ``policy.recorded`` event) unless already there; return its sha256."""
    sha, document = digest(policy)
    if conn.execute(_KNOWN, {"s": sha}).first() is None:
        conn.execute(
            policies.insert(), {"sha256": sha, "document": document, "recorded_at": at, "recorded_by": actor}
        )
        append(conn, at, actor, "policy.recorded", None, None, {"sha256": sha, "document": document})
    return sha


def document(conn: Connection, sha: str) -> dict[str, Any] | None:
    """The policy recorded under ``sha``, or None."""
    return conn.execute(_DOCUMENT, {"s": sha}).scalar()


def current(conn: Connection) -> tuple[str, Policy] | None:
    """(sha256, policy) of the policy in force, or None for a registry that has none yet.

    The stored document is re-hashed on every read: an edited document is refused at once, in
    every process, rather than hidden by a cache.
    """
    row = conn.execute(_CURRENT).first()
    if row is None:
        return None
    sha, doc = row
    if isinstance(doc, str):
        doc = json.loads(doc)
    if hashlib.sha256(canonical(doc)).hexdigest() != sha:
        raise IntegrityError(f"policy {sha[:12]}: the stored document does not hash to its sha256")
    parsed = _PARSED.get(sha)
    if parsed is None:
        parsed = _PARSED[sha] = Policy.from_dict(doc, source=f"stored policy {sha[:12]}")
    return sha, parsed


def set_current(
    conn: Connection, policy: Policy, *, actor: str, at: datetime, reason: str | None, append: Append
) -> PolicyInfo:
    """Make ``policy`` the one in force; a no-op when it already is.

    Seeding an empty registry is one ``policy.recorded`` event marked ``in_force``; a later change
    is ``policy.set`` (after ``policy.recorded`` when the document is new).
    """
    before = current(conn)
    sha, doc = digest(policy)
    if before is not None and before[0] == sha:
        return info(conn)  # type: ignore[return-value]
    known = conn.execute(_KNOWN, {"s": sha}).first() is not None
    if not known:
        conn.execute(
            policies.insert(), {"sha256": sha, "document": doc, "recorded_at": at, "recorded_by": actor}
        )
    conn.execute(policy_history.insert(), {"sha256": sha, "set_by": actor, "set_at": at, "reason": reason})
    if before is None and not known:
        payload = {"sha256": sha, "document": doc, "in_force": True, "reason": reason}
        append(conn, at, actor, "policy.recorded", None, None, payload)
    else:
        if not known:
            append(conn, at, actor, "policy.recorded", None, None, {"sha256": sha, "document": doc})
        previous = before[0] if before else None
        append(
            conn, at, actor, "policy.set", None, None, {"sha256": sha, "previous": previous, "reason": reason}
        )
    return info(conn)  # type: ignore[return-value]


_HISTORY = sa.select(policy_history, policies.c.document).join(
    policies, policies.c.sha256 == policy_history.c.sha256
)


def _info(r: Any) -> PolicyInfo:
    return PolicyInfo(sha256=r.sha256, document=r.document, set_by=r.set_by, set_at=r.set_at, reason=r.reason)


def history(conn: Connection) -> list[PolicyInfo]:
    """Every policy that was in force, oldest first."""
    return [_info(r) for r in conn.execute(_HISTORY.order_by(policy_history.c.id))]


def info(conn: Connection) -> PolicyInfo | None:
    """The policy in force with who set it and when, or None."""
    row = conn.execute(_HISTORY.order_by(policy_history.c.id.desc()).limit(1)).first()
    return _info(row) if row is not None else None
