"""Proof that a version's audit events lie in a signed checkpoint's chain.

The chain is a plain hash chain (``hash_i = sha256(hash_{i-1} ‖ canonical body_i)``), so the
segment from the version's first event up to the checkpoint's count, each link with its
canonical body, recomputes to the signed head hash. Anyone holding the segment and the public
key can check it without the registry.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry import audit, checkpoint
from registry.checkpoint import Checkpoint
from registry.entities import AuditEvent
from registry.errors import InvalidInput

# Enough for months of a busy registry; beyond it the pack says so and the export has the rest.
DEFAULT_CAP = 20_000


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
    reg: Any,
    events: list[AuditEvent],
    checkpoint: str | Path | None,
    pubkey: str | Path | None,
    *,
    cap: int = DEFAULT_CAP,
) -> ChainProof:
    """Check ``events`` against the checkpoint; refuse a checkpoint that does not verify.

    The chain is read through the public audit export, so this works on a server with a
    ``reader`` token as on a database file.
    """
    if checkpoint is None or pubkey is None:
        missing = "pubkey" if checkpoint is not None else "checkpoint"
        raise InvalidInput(
            f"{missing}: a checkpoint proof needs both --checkpoint and --pubkey", field=missing
        )
    signed, fields = read_checkpoint(str(checkpoint), Path(pubkey))
    count, head = signed.count, signed.head_hash
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
    walk = _Walk(count=count, head=head, first=covered[0] if covered else count + 1, cap=cap)
    with tempfile.TemporaryDirectory(prefix="govflow-pack-") as folder:
        export = Path(folder) / "audit.jsonl"
        reg.export_audit(export)
        with open(export, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    walk.step(AuditEvent.model_validate_json(line))
    chain_problem = walk.chain_problem(str(fields["source"]))
    if not covered:
        why = "the version has no events" if not events else "the checkpoint predates the version's events"
        problem = chain_problem or why
        return ChainProof(**base, verified=False, problem=problem, links_total=0, capped=False, segment=[])
    problem = walk.segment_problem
    if problem is None and walk.expected - 1 < count:
        problem = f"the registry's chain ends at seq {walk.expected - 1}, before the checkpoint's {count}"
    if problem is None and walk.last_hash != head:
        problem = f"seq {count} hashes to {walk.last_hash}, but the checkpoint signs {head}"
    problem = chain_problem or problem
    return ChainProof(
        **base,
        verified=problem is None,
        problem=problem,
        first_hash=walk.first_hash,
        last_hash=walk.last_hash,
        links_total=walk.total,
        capped=walk.total > len(walk.segment),
        segment=walk.segment,
    )


@dataclass
class _Walk:
    """One pass over the exported chain: recompute it from genesis, and keep the segment from
    ``first`` to ``count`` (checked link by link) for the pack."""

    count: int
    head: str
    first: int
    cap: int
    seen: int = 0
    stored: str = audit.GENESIS  # the stored hash of the last event read
    recomputed: str = audit.GENESIS
    hash_at: str | None = None  # the recomputed hash after ``count`` events
    fault: str | None = None  # the first fault of the whole chain
    segment: list[ChainLink] = field(default_factory=list)
    segment_problem: str | None = None
    expected: int = 0  # the next seq the segment expects
    first_hash: str | None = None
    last_hash: str | None = None
    total: int = 0

    def __post_init__(self) -> None:
        self.expected = self.first
        if self.count == 0:
            self.hash_at = audit.GENESIS

    def step(self, event: AuditEvent) -> None:
        self.seen += 1
        body = audit.canonical(audit.event_body(event)).decode("utf-8")
        if event.seq != self.seen:
            self._fault(event.seq, f"expected seq {self.seen}, found {event.seq}")
        elif event.prev_hash != self.stored:
            self._fault(event.seq, "prev_hash does not match the previous event's hash")
        self.recomputed = _link_hash(self.recomputed, body)
        if event.hash != self.recomputed:
            self._fault(event.seq, "hash does not match the event's content")
        self.stored = event.hash
        if self.seen == self.count:
            self.hash_at = self.recomputed
        if self.first <= event.seq <= self.count and self.segment_problem is None:
            self._link(ChainLink(seq=event.seq, prev_hash=event.prev_hash, hash=event.hash, body=body))

    def _link(self, link: ChainLink) -> None:
        self.segment_problem = _check_link(link, self.expected, self.last_hash)
        if self.segment_problem:
            return
        self.first_hash = self.first_hash or link.hash
        self.last_hash = link.hash
        self.total += 1
        self.expected += 1
        if len(self.segment) < self.cap:
            self.segment.append(link)

    def _fault(self, seq: int, problem: str) -> None:
        if self.fault is None:
            self.fault = f"audit chain broken at seq {seq}: {problem}"

    def chain_problem(self, source: str) -> str | None:
        """Why the chain fails the checkpoint (as ``govflow audit verify --checkpoint`` says), or None."""
        where = f"checkpoint {source}"
        if self.seen < self.count:
            return (
                f"{where}: the audit chain has {self.seen} events, the checkpoint signed {self.count} "
                "(history was truncated)"
            )
        if self.hash_at is None or self.hash_at != self.head:
            return (
                f"{where}: event {self.count} has hash {str(self.hash_at)[:12]}…, the checkpoint signed "
                f"{self.head[:12]}… (history before the checkpoint was rewritten)"
            )
        return f"{where}: {self.fault}" if self.fault else None


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


def read_checkpoint(path: str, pubkey: Path) -> tuple[Checkpoint, dict[str, Any]]:
    """The signed body of a checkpoint and the fields a pack shows.

    ``path`` is a local path or ``s3://bucket/key``, as ``registry.checkpoint`` reads them.
    Refuses a checkpoint that cannot be read, is malformed or is not signed by ``pubkey``; a
    chain that no longer extends it is reported by ``prove_events``, since that is evidence too.
    """
    verifier = checkpoint.load_verifier(pubkey)
    note, source = checkpoint.read_note(path)
    signed = checkpoint.parse_body(checkpoint.open_note(note, verifier, source), source)
    return signed, {"origin": signed.origin, "key": str(verifier), "source": source}
