"""The tamper-evident audit trail: a sha256 hash chain over canonical JSON.

``hash = sha256(prev_hash ‖ canonical JSON of the event)``, canonical meaning sorted keys, UTF-8
and no insignificant whitespace. The event body hashed is every column except ``hash`` itself
(``prev_hash`` is the chain link). Appends run inside the caller's write transaction, which
already holds the chain-head lock.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from registry import replay as replaying
from registry import state_check
from registry.canonical import canonical, canonical_text  # noqa: F401  (re-exported)
from registry.db.engine import CHAIN_HEAD
from registry.db.tables import audit_events, audit_head
from registry.entities import AuditEvent, VerifyReport

GENESIS = "0" * 64

# Actions the registry writes together with the state they describe; ``record()`` refuses them.
RESERVED_NAMESPACES = (
    "version.",
    "approval.",
    "alias.",
    "evidence.",
    "policy.",
    "model.",
    "user.",
    "audit.",
    "checkpoint.",
)
RESERVED_ACTIONS = frozenset({"model.rolled_back", "model.registered", "model.promoted"})


def is_reserved(action: str) -> bool:
    """True for actions in the registry's own namespaces."""
    return action.startswith(RESERVED_NAMESPACES) or action in RESERVED_ACTIONS


# Prebuilt statements: appends sit on every write path, so skip per-call SQL construction.
_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_INSERT = audit_events.insert()
_MOVE_HEAD = (
    audit_head.update()
    .where(audit_head.c.id == 1)
    .values(seq=sa.bindparam("b_seq"), hash=sa.bindparam("b_hash"))
)


def _body(
    seq: int,
    at: datetime | str,
    actor: str,
    db_user: str | None,
    action: str,
    model: str | None,
    version: int | None,
    payload: dict[str, Any],
) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": _iso(at),
        "actor": actor,
        "db_user": db_user,
        "action": action,
        "model": model,
        "version": version,
        "payload": payload,
    }


def event_body(row: Any) -> dict[str, Any]:
    """The body the chain hashes for a stored event row (every column but the two hashes)."""
    return _body(row.seq, row.at, row.actor, row.db_user, row.action, row.model, row.version, row.payload)


def link_hash(prev_hash: str, body: dict[str, Any]) -> str:
    """The hash of one event given the previous hash."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(body)).hexdigest()


def append(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    model: str | None = None,
    version: int | None = None,
    payload: dict[str, Any] | None = None,
    db_user: str | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the current write transaction."""
    # Round-trip the payload so what is stored and what is hashed are the same JSON.
    clean = json.loads(canonical(payload or {}))
    # A PostgreSQL write transaction read the head with its lock at BEGIN (engine.CHAIN_HEAD).
    known = conn.info.get(CHAIN_HEAD)
    prev_seq, prev_hash = known if known is not None else conn.execute(_HEAD).one()
    seq = prev_seq + 1
    body = _body(seq, at, actor, db_user, action, model, version, clean)
    digest = link_hash(prev_hash, body)
    conn.execute(
        _INSERT,
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "db_user": db_user,
            "action": action,
            "model": model,
            "version": version,
            "payload": clean,
            "prev_hash": prev_hash,
            "hash": digest,
        },
    )
    conn.execute(_MOVE_HEAD, {"b_seq": seq, "b_hash": digest})
    if known is not None:  # the lock is still ours: later appends in this transaction skip the read
        conn.info[CHAIN_HEAD] = (seq, digest)
    return AuditEvent(
        seq=seq,
        at=at,
        actor=actor,
        db_user=db_user,
        action=action,
        model=model,
        version=version,
        payload=clean,
        prev_hash=prev_hash,
        hash=digest,
    )


def to_event(row: Row[Any]) -> AuditEvent:
    """An audit row as an entity."""
    return AuditEvent(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        db_user=row.db_user,
        action=row.action,
        model=row.model,
        version=row.version,
        payload=row.payload,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def iter_events(conn: Connection, model: str | None = None, batch: int = 1000) -> Iterator[Row[Any]]:
    """Audit rows in seq order, fetched in batches so memory stays flat."""
    last = 0
    while True:
        stmt = sa.select(audit_events).where(audit_events.c.seq > last)
        if model is not None:
            stmt = stmt.where(audit_events.c.model == model)
        rows = conn.execute(stmt.order_by(audit_events.c.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


_RAW_EVENTS = sa.text(
    "SELECT seq, at, actor, db_user, action, model, version, CAST(payload AS TEXT), prev_hash, hash "
    "FROM audit_events WHERE seq > :last ORDER BY seq LIMIT :n"
)
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]').search


def _STR(value: Any) -> str:
    # Names, actions and actors hold no quotes or control characters; skip the encoder for them.
    if value is None:
        return "null"
    cls = value.__class__
    if cls is str:
        if not _NEEDS_ESCAPE(value):
            return f'"{value}"'
    elif cls is int:
        return str(value)
    return _ENCODE(value)


def _iso(at: Any) -> str:
    """The event time as hashed: ISO 8601, microseconds, UTC offset."""
    if isinstance(at, str):  # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC
        if len(at) == 26 and at[10] == " ":
            return f"{at[:10]}T{at[11:]}+00:00"
        at = datetime.fromisoformat(at).replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _raw_events(conn: Connection, batch: int = 5000) -> Iterator[Any]:
    last = 0
    while True:
        rows = conn.execute(_RAW_EVENTS, {"last": last, "n": batch}).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def _spliced(
    seq: int, at: str, actor: Any, db_user: Any, action: Any, model: Any, version: Any, payload: str
) -> bytes:
    # The canonical body, built around the stored payload text (stored canonical) without re-encoding it.
    return (
        f'{{"action":{_STR(action)},"actor":{_STR(actor)},"at":"{at}","db_user":{_STR(db_user)},'
        f'"model":{_STR(model)},"payload":{payload},"seq":{seq},"version":{_STR(version)}}}'
    ).encode()


def verify(conn: Connection, *, state: bool = True) -> VerifyReport:
    """Recompute the whole chain, then (``state``) check the tables against the replayed log.

    Detects an edited event (hash mismatch), a deleted one (seq gap or head mismatch), an
    inserted one (seq or link mismatch) and reordering (link mismatch). The state check catches
    edits of the tables themselves: a forged approval, a moved stage, a swapped digest.
    Run it inside one snapshot (``Database.snapshot``) so concurrent writers cannot make the
    events and the head disagree.
    """
    loads = state_check.loads

    expected_seq = 1
    prev = GENESIS
    count = 0
    replay = replaying.Replay() if state else None
    sha256 = hashlib.sha256
    noncanonical = 0
    for seq, at, actor, db_user, action, model, version, text, prev_hash, stored in _raw_events(conn):
        count += 1
        if seq != expected_seq:
            return _bad(count, expected_seq, f"expected seq {expected_seq}, found {seq}")
        if prev_hash != prev:
            return _bad(count, seq, "prev_hash does not match the previous event's hash")
        try:
            payload = loads(text)
            iso = _iso(at)
            digest = sha256(
                prev.encode("ascii") + _spliced(seq, iso, actor, db_user, action, model, version, text)
            ).hexdigest()
            if digest != stored:
                # Stored text that is not canonical (re-laid-out): hash the canonical form.
                noncanonical += 1
                body = _body(seq, at, actor, db_user, action, model, version, payload)
                digest = sha256(prev.encode("ascii") + canonical(body)).hexdigest()
        except (TypeError, ValueError) as exc:
            return _bad(count, seq, f"event cannot be canonicalized: {exc}")
        if digest != stored:
            return _bad(count, seq, "hash does not match the event's content")
        if replay is not None:
            try:
                replay.apply(seq, at, actor, action, model, version, payload)
            except replaying.LogInconsistent as exc:
                return _bad(count, seq, str(exc))
        prev = stored
        expected_seq += 1
    head = conn.execute(_HEAD).one()
    last = expected_seq - 1
    if head.seq != last or head.hash != prev:
        # Past the head: an appended forgery; short of it: deleted tail events; equal: the last
        # event was rewritten with a self-consistent hash.
        bad = min(head.seq, last) + 1 if head.seq != last else last
        return _bad(
            count, bad, f"chain ends at seq {last} ({prev[:12]}), head says {head.seq} ({head.hash[:12]})"
        )
    if replay is not None:
        try:
            problem = state_check.compare(conn, replay)
        except replaying.LogInconsistent as exc:
            return _bad(count, last, str(exc))
        if problem:
            return VerifyReport(
                ok=False, events=count, problem=problem, scope="state", noncanonical=noncanonical
            )
    return VerifyReport(ok=True, events=count, noncanonical=noncanonical)


def _bad(count: int, seq: int, problem: str) -> VerifyReport:
    return VerifyReport(ok=False, events=count, first_bad_seq=seq, problem=problem, scope="chain")
