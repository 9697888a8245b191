"""Proof that a version's audit events lie in a signed checkpoint's chain.

The chain is a plain hash chain (``hash_i = sha256(hash_{i-1} ‖ canonical body_i)``), so the
segment from the version's first event up to the checkpoint's count, each link with its
canonical body, recomputes to the signed head hash. Anyone holding the segment and the public
key can check it without the registry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection, Row

from registry import audit, checkpoint
from registry.db.tables import audit_events
from registry.entities import AuditEvent
from registry.errors import AuditChainBroken, InvalidInput

if TYPE_CHECKING:
    from registry.registry import Registry

# Enough for months of a busy registry; beyond it the pack says so and the export has the rest.
DEFAULT_CAP = 20_000
_BATCH = 1000


class ChainLink(BaseModel):
    """One event of the segment, as hashed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(description="Position in the chain.")
    prev_hash: str = Field(description="Hash of the previous event.")
    hash: str = Field(description="sha256(prev_hash ‖ body).")
    body: str = Field(description="The canonical JSON body exactly as hashed.")


class ChainProof(BaseModel):
    """The version's events checked against a signed checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checkpoint_count: int = Field(description="Events the checkpoint covers.")
    checkpoint_head: str = Field(description="Head hash the checkpoint signs.")
    checkpoint: dict[str, Any] = Field(description="The checkpoint's fields, as parsed.")
    signature_ok: bool = Field(description="The checkpoint's signature verified with the given key.")
    covered_seqs: list[int] = Field(description="The version's events at or before the checkpoint.")
    uncovered_seqs: list[int] = Field(description="The version's events after the checkpoint.")
    verified: bool = Field(description="The segment recomputes, link by link, to the signed head.")
    problem: str | None = Field(default=None, description="Why it does not verify.")
    first_hash: str | None = Field(default=None, description="Hash of the segment's first event.")
    last_hash: str | None = Field(default=None, description="Hash of the segment's last event.")
    links_total: int = Field(description="Events in the segment.")
    capped: bool = Field(description="True when only the first links are embedded.")
    segment: list[ChainLink] = Field(description="The embedded links, oldest first.")


def prove_events(
    reg: Registry,
    events: list[AuditEvent],
    checkpoint: str | Path | None,
    pubkey: str | Path | None,
    *,
    cap: int = DEFAULT_CAP,
) -> ChainProof:
    """Check ``events`` against the checkpoint; refuse a checkpoint that does not verify."""
    if checkpoint is None or pubkey is None:
        missing = "pubkey" if checkpoint is not None else "checkpoint"
        raise InvalidInput(
            f"{missing}: a checkpoint proof needs both --checkpoint and --pubkey", field=missing
        )
    count, head, fields, chain_problem = read_checkpoint(reg, str(checkpoint), Path(pubkey))
    covered = [e.seq for e in events if e.seq <= count]
    uncovered = [e.seq for e in events if e.seq > count]
    base = {
        "checkpoint_count": count,
        "checkpoint_head": head,
        "checkpoint": fields,
        "signature_ok": True,
        "covered_seqs": covered,
        "uncovered_seqs": uncovered,
    }
    if not covered:
        why = "the version has no events" if not events else "the checkpoint predates the version's events"
        problem = chain_problem or why
        return ChainProof(**base, verified=False, problem=problem, links_total=0, capped=False, segment=[])
    segment: list[ChainLink] = []
    first_hash = last_hash = None
    total = 0
    problem = None
    expected = covered[0]
    with reg.db.read() as conn:
        for row in _rows(conn, covered[0], count):
            link = ChainLink(seq=row.seq, prev_hash=row.prev_hash, hash=row.hash, body=_canonical_body(row))
            problem = _check_link(link, expected, last_hash)
            if problem:
                break
            first_hash = first_hash or link.hash
            last_hash = link.hash
            total += 1
            expected += 1
            if len(segment) < cap:
                segment.append(link)
    if problem is None and expected - 1 != count:
        problem = f"the registry's chain ends at seq {expected - 1}, before the checkpoint's {count}"
    if problem is None and last_hash != head:
        problem = f"seq {count} hashes to {last_hash}, but the checkpoint signs {head}"
    problem = chain_problem or problem
    return ChainProof(
        **base,
        verified=problem is None,
        problem=problem,
        first_hash=first_hash,
        last_hash=last_hash,
        links_total=total,
        capped=total > len(segment),
        segment=segment,
    )


def verify_segment(links: list[ChainLink], head: str) -> bool:
    """Recompute a segment offline: each link from its prev_hash and body, ending at ``head``."""
    prev = links[0].prev_hash if links else None
    for link in links:
        if link.prev_hash != prev or _link_hash(prev, link.body) != link.hash:
            return False
        prev = link.hash
    return bool(links) and prev == head


def _link_hash(prev: str | None, body: str) -> str:
    # audit.link_hash's formula, applied to the body text as embedded rather than a dict.
    return hashlib.sha256((prev or "").encode("ascii") + body.encode("utf-8")).hexdigest()


def _check_link(link: ChainLink, expected_seq: int, prev: str | None) -> str | None:
    if link.seq != expected_seq:
        return f"expected seq {expected_seq}, found {link.seq}"
    if prev is not None and link.prev_hash != prev:
        return f"seq {link.seq}: prev_hash does not match the previous event's hash"
    if _link_hash(link.prev_hash, link.body) != link.hash:
        return f"seq {link.seq}: hash does not match the event's content"
    return None


def _rows(conn: Connection, first: int, last: int) -> Iterator[Row[Any]]:
    """Audit rows with ``first <= seq <= last`` in batches, so memory stays flat."""
    start = first
    while start <= last:
        stmt = (
            sa.select(audit_events)
            .where(audit_events.c.seq >= start, audit_events.c.seq <= last)
            .order_by(audit_events.c.seq)
            .limit(_BATCH)
        )
        rows = conn.execute(stmt).all()
        if not rows:
            return
        yield from rows
        start = rows[-1].seq + 1


def _canonical_body(row: Row[Any]) -> str:
    """The event body exactly as the chain hashes it."""
    return audit.canonical(audit.event_body(row)).decode("utf-8")


def read_checkpoint(reg: Registry, path: str, pubkey: Path) -> tuple[int, str, dict[str, Any], str | None]:
    """The signed count and head of a checkpoint, its fields, and why the chain fails it (or None).

    ``path`` is a local path or ``s3://bucket/key``, as ``registry.checkpoint`` reads them.

    A checkpoint that cannot be read, is malformed or is not signed by ``pubkey`` is refused;
    a chain that no longer extends it is reported, since that is evidence too.
    """
    verifier = checkpoint.load_verifier(pubkey)
    note, source = checkpoint.read_note(path)
    signed = checkpoint.parse_body(checkpoint.open_note(note, verifier, source), source)
    fields: dict[str, Any] = {"origin": signed.origin, "key": str(verifier), "source": source}
    try:
        checkpoint.verify_note(reg, note, verifier, source)
    except AuditChainBroken as exc:
        return signed.count, signed.head_hash, fields, str(exc)
    return signed.count, signed.head_hash, fields, None
