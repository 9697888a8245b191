"""The policy kept in the registry: every document by sha256, and the history of which was in force.

The policy in force is the latest ``policy_history`` row. Decisions read it inside their own
transaction and record its sha256; a caller's file only seeds an empty registry.

On a registry server, a policy that counts typed names (``authenticated_approvals = false``)
holds only when an authenticated admin set it there with a reason: the ``policy.set`` event that
put it in force then carries ``"server": true``, and every report of it carries a warning.
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
from registry.db.tables import audit_events, policies, policy_history
from registry.entities import PolicyInfo
from registry.errors import Forbidden, IntegrityError, InvalidInput
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
    conn: Connection,
    policy: Policy,
    *,
    actor: str,
    at: datetime,
    reason: str | None,
    append: Append,
    on_server: bool = False,
) -> PolicyInfo:
    """Make ``policy`` the one in force; a no-op when it already is.

    Seeding an empty registry is one ``policy.recorded`` event marked ``in_force``; a later change
    is ``policy.set`` (after ``policy.recorded`` when the document is new). ``on_server`` marks the
    event as set by an authenticated caller of a registry server.
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
        append(conn, at, actor, "policy.recorded", None, None, payload | _mark(on_server))
    else:
        if not known:
            append(conn, at, actor, "policy.recorded", None, None, {"sha256": sha, "document": doc})
        previous = before[0] if before else None
        payload = {"sha256": sha, "previous": previous, "reason": reason}
        append(conn, at, actor, "policy.set", None, None, payload | _mark(on_server))
    return info(conn)  # type: ignore[return-value]


def _mark(on_server: bool) -> dict[str, Any]:
    return {"server": True} if on_server else {}


_HISTORY = sa.select(policy_history, policies.c.document).join(
    policies, policies.c.sha256 == policy_history.c.sha256
)


def _info(r: Any, warnings: list[str] | None = None) -> PolicyInfo:
    return PolicyInfo(
        sha256=r.sha256,
        document=r.document,
        set_by=r.set_by,
        set_at=r.set_at,
        reason=r.reason,
        warnings=warnings or [],
    )


def history(conn: Connection) -> list[PolicyInfo]:
    """Every policy that was in force, oldest first."""
    return [_info(r) for r in conn.execute(_HISTORY.order_by(policy_history.c.id))]


def info(conn: Connection) -> PolicyInfo | None:
    """The policy in force with who set it and when, or None."""
    row = conn.execute(_HISTORY.order_by(policy_history.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    doc = json.loads(row.document) if isinstance(row.document, str) else row.document
    lax = doc.get("authenticated_approvals") is False
    return _info(row, server_warnings(row, in_force_event(conn)) if lax else None)


# --- the server's rule: typed names count only when an admin said so on the server -------------

_POLICY_EVENTS = (
    sa.select(audit_events.c.action, audit_events.c.actor, audit_events.c.at, audit_events.c.payload)
    # model IS NULL lets the model index skip the versions' events of a long log.
    .where(audit_events.c.model.is_(None), audit_events.c.action.in_(("policy.set", "policy.recorded")))
    .order_by(audit_events.c.seq.desc())
)


def in_force_event(conn: Connection) -> dict[str, Any] | None:
    """The audit event that put the policy in force (``policy.set``, or the seed's
    ``policy.recorded`` marked ``in_force``) as ``{action, actor, at, payload}``, or None."""
    for row in conn.execute(_POLICY_EVENTS):
        payload = json.loads(row.payload) if isinstance(row.payload, str) else row.payload
        if row.action == "policy.set" or payload.get("in_force"):
            return {"action": row.action, "actor": row.actor, "at": row.at, "payload": payload}
    return None


def set_on_server(event: dict[str, Any] | None, sha: str) -> bool:
    """Whether ``event`` put policy ``sha`` in force as a change an authenticated caller made on a
    registry server, with a reason (only an admin may change the policy)."""
    if event is None or event["action"] != "policy.set" or event["payload"].get("sha256") != sha:
        return False  # a history row with no event of its own is no admin's choice
    payload = event["payload"]
    via = payload.get("via") or {}
    reason = payload.get("reason")
    return payload.get("server") is True and bool(via.get("principal")) and bool(reason and reason.strip())


def server_warnings(record: Any, event: dict[str, Any] | None) -> list[str]:
    """The warning every report of a policy counting typed names carries, when an admin set it
    on a server (``record`` is the policy_history row in force)."""
    if not set_on_server(event, record.sha256):
        return []
    at = record.set_at.strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"WARNING: authenticated_approvals = false: a name typed into a form counts toward the quorum "
        f"(turned off on the server by {record.set_by} at {at}: {record.reason})"
    ]


def lax_allowed(conn: Connection, sha: str) -> bool:
    """Whether the policy ``sha`` counting typed names is the one in force, set so on a server."""
    stored = current(conn)
    return stored is not None and stored[0] == sha and set_on_server(in_force_event(conn), sha)


def check_server_change(policy: Policy, caller: Any, reason: str | None) -> None:
    """On a server, refuse turning ``authenticated_approvals`` off except by an authenticated
    admin giving a reason (``caller`` is the ``identity.Caller``)."""
    if policy.authenticated_approvals:
        return
    if not caller.authenticated or "admin" not in (caller.roles or ()):
        raise Forbidden(
            "authenticated_approvals: only an admin authenticated by the server may turn it off",
            field="authenticated_approvals",
        )
    if reason is None or not reason.strip():
        raise InvalidInput(
            "reason: turning authenticated_approvals off on a server needs a reason "
            "(`govflow policy set FILE --reason …`)",
            field="reason",
        )
