"""Signed checkpoints of the audit chain: history pinned outside the database.

Anyone who can write the database can rebuild a self-consistent chain after an edit. A
checkpoint kept elsewhere (another host, an S3 bucket with object lock) pins the chain's head at
a count, so such a rebuild no longer verifies against it.

A checkpoint is a C2SP signed note (c2sp.org/signed-note) with a tlog-checkpoint body::

    govflow/postgresql/db.example:5432/registry      <- origin
    1042                                             <- event count
    q0Lb0S5VdXy6Yx3Wc3m3rNtjKxq6p5Q1yGqO2b7g1yI=     <- head hash: base64 of its 32 bytes
                                                     <- blank line
    — govflow Ab3Xk0...                              <- base64(4-byte key id ‖ Ed25519 signature)

``note`` holds the format and the keys, ``files`` the local and S3 storage; this module reads
the chain and proves a checkpoint against it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry import audit
from registry.checkpoint.files import read_note, write_checkpoint
from registry.checkpoint.note import (
    Checkpoint,
    CheckpointCheck,
    SigningKey,
    Verifier,
    check_key_name,
    format_body,
    key_id,
    keygen,
    load_signing_key,
    load_verifier,
    open_note,
    parse_body,
    sign_note,
)
from registry.config import env
from registry.db import Database
from registry.db.tables import audit_head
from registry.errors import AuditChainBroken, IntegrityError

__all__ = [
    "Checkpoint",
    "CheckpointCheck",
    "SigningKey",
    "Verifier",
    "checkpoint_from_env",
    "default_folder",
    "default_origin",
    "key_id",
    "keygen",
    "load_signing_key",
    "load_verifier",
    "make_checkpoint",
    "open_note",
    "read_note",
    "save_checkpoint",
    "sign_note",
    "verify_checkpoint",
    "verify_note",
    "write_checkpoint",
]

_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)


def default_origin(url: str) -> str:
    """``govflow/<backend>/<host:port>/<database>`` or ``govflow/sqlite/<path>``, no credentials."""
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database or ":memory:"
        where = db if db == ":memory:" else str(Path(db).expanduser().resolve())
        origin = f"govflow/sqlite/{where.lstrip('/')}"
    else:
        host = f"{parsed.host or 'localhost'}:{parsed.port}" if parsed.port else parsed.host or "localhost"
        origin = f"govflow/{backend}/{host}/{parsed.database or ''}"
    return "".join("_" if c.isspace() or c == "+" or not c.isprintable() else c for c in origin)


# --- the chain, read in one snapshot --------------------------------------------------------


@dataclass
class _Walk:
    count: int = 0
    hash_at: str | None = None  # the recomputed hash after `at` events
    head: str = audit.GENESIS  # the stored hash of the last event
    bad_seq: int | None = None
    problem: str | None = None


def _walk(conn: Connection, at: int | None = None) -> _Walk:
    """Recompute the chain from genesis; note the hash after ``at`` events and the first fault."""
    walk = _Walk(hash_at=audit.GENESIS if at == 0 else None)
    recomputed = stored = audit.GENESIS

    def fault(seq: int, problem: str) -> None:
        if walk.problem is None:
            walk.bad_seq, walk.problem = seq, problem

    for row in audit.iter_events(conn):
        walk.count += 1
        if row.seq != walk.count:
            fault(row.seq, f"expected seq {walk.count}, found {row.seq}")
        elif row.prev_hash != stored:
            fault(row.seq, "prev_hash does not match the previous event's hash")
        try:
            recomputed = audit.link_hash(recomputed, audit.event_body(row))
        except (TypeError, ValueError) as exc:
            fault(row.seq, f"event cannot be canonicalized: {exc}")
            recomputed = "!" * 64  # never a hex digest: every later hash mismatches too
        if row.hash != recomputed:
            fault(row.seq, "hash does not match the event's content")
        stored = row.hash
        if walk.count == at:
            walk.hash_at = recomputed
    walk.head = stored
    head = conn.execute(_HEAD).one()
    if head.seq != walk.count or head.hash != stored:
        # As audit.verify: past or short of the head, the first seq beyond the shorter; else the last.
        bad = min(head.seq, walk.count) + 1 if head.seq != walk.count else walk.count
        fault(bad, f"chain ends at seq {walk.count}, head says {head.seq}")
    return walk


def _db(source: Any) -> Database:
    db = getattr(source, "db", source)
    if not isinstance(db, Database):
        raise TypeError(f"expected a Registry, Database or Connection, got {type(source).__name__}")
    return db


# --- make, write, read, verify --------------------------------------------------------------


def make_checkpoint(source: Any, key: SigningKey | str | Path, *, origin: str | None = None) -> str:
    """Sign the current head; refuse (AuditChainBroken) when the chain does not verify.

    ``source`` is a Registry, a Database or a Connection already inside a transaction.
    """
    signer = key if isinstance(key, SigningKey) else load_signing_key(key)
    if isinstance(source, Connection):
        walk, url = _walk(source), source.engine.url.render_as_string(hide_password=True)
    else:
        db = _db(source)
        with db.snapshot() as conn:
            walk = _walk(conn)
        url = db.url
    if walk.problem is not None:
        raise AuditChainBroken(
            f"audit chain broken at seq {walk.bad_seq}: {walk.problem}; no checkpoint signed",
            seq=walk.bad_seq or 0,
        )
    name = origin or os.environ.get("GOVFLOW_CHECKPOINT_ORIGIN") or default_origin(url)
    return sign_note(format_body(check_key_name(name, "origin"), walk.count, walk.head), signer)


def verify_checkpoint(
    registry: Any, checkpoint: str | Path, pubkey: Verifier | str | Path, *, origin: str | None = None
) -> CheckpointCheck:
    """Prove the current chain extends the signed checkpoint; raise IntegrityError if not.

    ``checkpoint`` is the note's text, a local path or ``s3://bucket/key``; see ``verify_note``.
    """
    verifier = pubkey if isinstance(pubkey, Verifier) else load_verifier(pubkey)
    note, source = read_note(checkpoint)
    return verify_note(registry, note, verifier, source, origin=origin)


def verify_note(
    registry: Any, note: str, verifier: Verifier, source: str, *, origin: str | None = None
) -> CheckpointCheck:
    """Check a checkpoint's text; ``source`` names it in every message.

    Checks, in order: the signature; the origin when one is expected; and, in one snapshot,
    that the chain recomputed from genesis reaches the signed count with exactly the signed hash
    (nothing before it changed) and still verifies after it.
    """
    signed = parse_body(open_note(note, verifier, source), source)
    where = f"checkpoint {source}"
    if origin is not None and signed.origin != origin:
        raise IntegrityError(f"{where}: origin is {signed.origin!r}, expected {origin!r}")
    with _db(registry).snapshot() as conn:
        walk = _walk(conn, at=signed.count)
    if walk.count < signed.count:
        raise AuditChainBroken(
            f"{where}: the audit chain has {walk.count} events, the checkpoint signed {signed.count} "
            "(history was truncated)",
            seq=walk.count + 1,
        )
    if walk.hash_at != signed.head_hash:
        raise AuditChainBroken(
            f"{where}: event {signed.count} has hash {str(walk.hash_at)[:12]}…, the checkpoint signed "
            f"{signed.head_hash[:12]}… (history before the checkpoint was rewritten)",
            seq=signed.count,
        )
    if walk.problem is not None:
        raise AuditChainBroken(
            f"{where}: audit chain broken at seq {walk.bad_seq}: {walk.problem}", seq=walk.bad_seq or 0
        )
    return CheckpointCheck(**signed.model_dump(), source=source, key=str(verifier), events=walk.count)


def save_checkpoint(
    registry: Any, key: SigningKey | str | Path, out: str | Path, *, origin: str | None = None
) -> tuple[Checkpoint, str]:
    """Sign the current head and write it to ``out``; return the checkpoint and where it went."""
    text = make_checkpoint(registry, key, origin=origin)
    return _unsigned(text), write_checkpoint(text, out)


def default_folder(url: str) -> str:
    """Beside a SQLite file (``<its folder>/checkpoints``), else ``.govflow/checkpoints``."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return str(Path(parsed.database).expanduser().parent / "checkpoints")
    return ".govflow/checkpoints"


def checkpoint_from_env(registry: Any) -> str | None:
    """If ``GOVFLOW_CHECKPOINT_KEY`` names a .key, write ``<count>.txt`` into the folder (or
    s3:// prefix) ``GOVFLOW_CHECKPOINT_OUT``, by default ``default_folder``; return where."""
    key = env("GOVFLOW_CHECKPOINT_KEY")
    if not key:
        return None
    folder = env("GOVFLOW_CHECKPOINT_OUT") or default_folder(_db(registry).url)
    text = make_checkpoint(registry, key)
    name = f"{_unsigned(text).count:012d}.txt"
    return write_checkpoint(text, f"{folder.rstrip('/')}/{name}")


def _unsigned(note: str) -> Checkpoint:
    # Only for notes this module just signed: their body is everything before the blank line.
    return parse_body(note[: note.rfind("\n\n") + 1])
