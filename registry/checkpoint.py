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

The signature covers the body including its last newline. The key id is the first 4 bytes of
SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key). Keys use the Go ``sumdb/note`` text encodings:
``PRIVATE+KEY+<name>+<id hex>+<base64(0x01 ‖ seed)>`` (.key) and
``<name>+<id hex>+<base64(0x01 ‖ public key)>`` (.pub).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection, Row

from registry import audit
from registry.db import Database
from registry.db.tables import audit_head
from registry.errors import ArtifactStoreError, AuditChainBroken, IntegrityError, InvalidInput

EM_DASH = "\u2014"
ED25519 = b"\x01"
MAX_NOTE = 64 * 1024  # a checkpoint is a few hundred bytes; refuse to slurp anything large
_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key with its note name."""

    name: str
    private: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.private.public_key().public_bytes_raw())


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 public key with its note name."""

    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte key id of the signed-note spec: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519 + public).digest()[:4]


def check_key_name(name: str, field: str = "name") -> str:
    """A key name is non-empty and has no spaces, no '+' and no control characters."""
    if not name or any(c.isspace() or c == "+" or not c.isprintable() for c in name):
        raise InvalidInput(f"{field}: {name!r} must be non-empty, without spaces or '+'", field=field)
    return name


def keygen(prefix: str | Path, name: str = "govflow") -> tuple[Path, Path]:
    """Write PREFIX.key (mode 0600 from creation) and PREFIX.pub; refuse to overwrite either."""
    check_key_name(name)
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (key_path, pub_path):
        if path.exists() or path.is_symlink():
            raise InvalidInput(f"out: {path} exists; refusing to overwrite a key", field="out")
    private = Ed25519PrivateKey.generate()
    pub = private.public_key().public_bytes_raw()
    kid = key_id(name, pub).hex()
    seed = private.private_bytes_raw()
    _create(key_path, f"PRIVATE+KEY+{name}+{kid}+{_b64(ED25519 + seed)}\n", 0o600)
    try:
        _create(pub_path, f"{name}+{kid}+{_b64(ED25519 + pub)}\n", 0o644)
    except InvalidInput:
        key_path.unlink(missing_ok=True)  # no private key without its public half
        raise
    return key_path, pub_path


def _create(path: Path, text: str, mode: int) -> None:
    # O_EXCL with the final mode: the secret is never readable by others, not even for a moment.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:
        raise InvalidInput(f"out: cannot create {path}: {exc.strerror or exc}", field="out") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise InvalidInput(f"out: cannot write {path}: {exc.strerror or exc}", field="out") from exc


def load_signing_key(path: str | Path) -> SigningKey:
    """Read a .key file; refuse a public key, a PEM file, another key type or a bad key id."""
    text = _read_text(path, "key").strip()
    where = f"key {path}"
    if text.startswith("-----BEGIN"):
        raise InvalidInput(
            f"{where}: PEM keys are not supported; make one with govflow audit keygen", field="key"
        )
    parts = text.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        hint = (
            "is a public key; sign with the .key file"
            if len(text.split("+", 2)) == 3
            else ("is not a signing key (expected PRIVATE+KEY+<name>+<id>+<base64>)")
        )
        raise InvalidInput(f"{where}: {hint}", field="key")
    name, kid, raw = parts[2], parts[3], _key_bytes(parts[4], where, "key")
    private = Ed25519PrivateKey.from_private_bytes(raw)
    key = SigningKey(check_key_name(name, "key"), private)
    if key.verifier.key_id.hex() != kid.lower():
        raise InvalidInput(f"{where}: key id {kid} does not match the key", field="key")
    return key


def load_verifier(path: str | Path) -> Verifier:
    """Read a .pub file; refuse a private key (without echoing it) and other key types."""
    text = _read_text(path, "pubkey").strip()
    where = f"pubkey {path}"
    if text.startswith("PRIVATE+KEY+"):
        raise InvalidInput(f"{where}: is a private key; give the .pub file", field="pubkey")
    parts = text.split("+", 2)
    if len(parts) != 3 or text.startswith("-----BEGIN"):
        raise InvalidInput(f"{where}: is not a verifier key (expected <name>+<id>+<base64>)", field="pubkey")
    verifier = Verifier(check_key_name(parts[0], "pubkey"), _key_bytes(parts[2], where, "pubkey"))
    if verifier.key_id.hex() != parts[1].lower():
        raise InvalidInput(f"{where}: key id {parts[1]} does not match the key", field="pubkey")
    return verifier


def _read_text(path: str | Path, field: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_NOTE + 1)
    except OSError as exc:
        raise InvalidInput(f"{field} {path}: cannot read: {exc.strerror or exc}", field=field) from None
    try:
        if len(data) > MAX_NOTE:
            raise ValueError
        return data.decode("utf-8")
    except ValueError:
        raise InvalidInput(f"{field} {path}: is not a key file", field=field) from None


def _key_bytes(text: str, where: str, field: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: the key is not valid base64", field=field) from None
    if raw[:1] != ED25519:
        raise InvalidInput(f"{where}: key type {raw[:1].hex() or 'none'} is not Ed25519 (01)", field=field)
    if len(raw) != 33:
        raise InvalidInput(f"{where}: an Ed25519 key is 32 bytes, this one is {len(raw) - 1}", field=field)
    return raw[1:]


# --- the note -------------------------------------------------------------------------------


class Checkpoint(BaseModel):
    """The signed body of a checkpoint."""

    origin: str = Field(description="The registry that issued it.")
    count: int = Field(ge=0, description="Audit events in the chain when it was signed.")
    head_hash: str = Field(description="The chain's hash at that count, hex (64 zeros when empty).")


class CheckpointCheck(Checkpoint):
    """A checkpoint that verified against the current chain."""

    source: str = Field(description="Where the checkpoint was read from.")
    key: str = Field(description="The key that signed it: name+id.")
    events: int = Field(description="Events in the chain now (at least count).")


def sign_note(text: str, key: SigningKey) -> str:
    """``text`` (ending in a newline) followed by a blank line and its signature line."""
    if not text.endswith("\n") or "\n\n" in text:
        raise InvalidInput("note: text must end with one newline and hold no blank line", field="note")
    sig = key.private.sign(text.encode("utf-8"))
    return f"{text}\n{EM_DASH} {key.name} {_b64(key.verifier.key_id + sig)}\n"


def open_note(note: str, verifier: Verifier, source: str) -> str:
    """The signed text of ``note`` if ``verifier`` signed it; IntegrityError otherwise."""
    where = f"checkpoint {source}"
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise IntegrityError(f"{where}: not a signed note (no signature block)")
    text, block = note[: split + 1], note[split + 2 : -1]
    seen = []
    for line in block.split("\n"):
        name, _, sig64 = line.removeprefix(f"{EM_DASH} ").partition(" ")
        try:
            raw = base64.b64decode(sig64, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not line.startswith(f"{EM_DASH} ") or len(raw) < 5 or " " in sig64:
            raise IntegrityError(f"{where}: malformed signature line {line[:40]!r}")
        seen.append(f"{name}+{raw[:4].hex()}")
        if name == verifier.name and raw[:4] == verifier.key_id:
            try:
                Ed25519PublicKey.from_public_bytes(verifier.public).verify(raw[4:], text.encode("utf-8"))
            except InvalidSignature:
                raise IntegrityError(
                    f"{where}: the signature of {verifier} does not verify (the checkpoint was altered)"
                ) from None
            return text
    raise IntegrityError(f"{where}: not signed by {verifier} (signed by {', '.join(seen)})")


def format_body(origin: str, count: int, head_hash: str) -> str:
    """The checkpoint text: origin, count, base64 head hash, one per line."""
    return f"{origin}\n{count}\n{_b64(bytes.fromhex(head_hash))}\n"


def parse_body(text: str, source: str = "text") -> Checkpoint:
    """Origin, count and head hash from a checkpoint's text (extension lines are ignored)."""
    lines = text.split("\n")[:-1]
    where = f"checkpoint {source}"
    if len(lines) < 3 or not all(lines):
        raise IntegrityError(f"{where}: the body needs origin, count and head hash lines")
    origin, count, head = lines[:3]
    if not count.isascii() or not count.isdigit() or (count.startswith("0") and count != "0"):
        raise IntegrityError(f"{where}: count {count[:20]!r} is not a decimal number")
    try:
        digest = base64.b64decode(head, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        raise IntegrityError(f"{where}: head hash {head[:60]!r} is not base64 of 32 bytes")
    return Checkpoint(origin=origin, count=int(count), head_hash=digest.hex())


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


def _body(row: Row[Any]) -> dict[str, Any]:
    # The hashed body is every column but hash (see registry/audit.py), times in microseconds.
    event = audit.to_event(row)
    body = event.model_dump(mode="json", exclude={"hash", "prev_hash"})
    body["at"] = event.at.isoformat(timespec="microseconds")
    return body


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
            recomputed = audit.link_hash(recomputed, _body(row))
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
        fault(min(head.seq, walk.count) + 1, f"chain ends at seq {walk.count}, head says {head.seq}")
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


def write_checkpoint(text: str, dest: str | Path) -> str:
    """Write to a local path (temp file, then rename) or to ``s3://bucket/key``; return where."""
    dest = str(dest)
    if dest.startswith("s3://"):
        bucket, key = _s3_parts(dest)
        with _s3_errors("write", dest):
            _s3_client(bucket).put_object(
                Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType="text/plain; charset=utf-8"
            )
        return dest
    path = Path(dest)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise InvalidInput(f"out: cannot write {path}: {exc.strerror or exc}", field="out") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return str(path)


def read_note(checkpoint: str | Path) -> tuple[str, str]:
    """The note's text and a label naming where it came from (text, path or s3:// URI)."""
    if isinstance(checkpoint, str) and "\n" in checkpoint:
        return checkpoint, "(text)"
    source = str(checkpoint)
    if source.startswith("s3://"):
        bucket, key = _s3_parts(source)
        with _s3_errors("read", source):
            data = _s3_client(bucket).get_object(Bucket=bucket, Key=key)["Body"].read(MAX_NOTE + 1)
    else:
        try:
            with open(source, "rb") as fh:
                data = fh.read(MAX_NOTE + 1)
        except OSError as exc:
            raise InvalidInput(
                f"checkpoint {source}: cannot read: {exc.strerror or exc}", field="checkpoint"
            ) from exc
    if len(data) > MAX_NOTE:
        raise IntegrityError(f"checkpoint {source}: larger than {MAX_NOTE} bytes; not a checkpoint")
    try:
        return data.decode("utf-8"), source
    except UnicodeDecodeError:
        raise IntegrityError(f"checkpoint {source}: not UTF-8 text; not a checkpoint") from None


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
    key = os.environ.get("GOVFLOW_CHECKPOINT_KEY")
    if not key:
        return None
    folder = os.environ.get("GOVFLOW_CHECKPOINT_OUT") or default_folder(_db(registry).url)
    text = make_checkpoint(registry, key)
    name = f"{_unsigned(text).count:012d}.txt"
    return write_checkpoint(text, f"{folder.rstrip('/')}/{name}")


# --- S3 -------------------------------------------------------------------------------------


def _s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise InvalidInput(f"checkpoint: {uri!r} is not s3://bucket/key", field="checkpoint")
    return bucket, key


def _s3_client(bucket: str) -> Any:
    # The artifact store's client: same endpoint, retries, timeouts and credentials.
    from registry.artifacts.s3 import S3ArtifactStore

    return S3ArtifactStore.from_uri(f"s3://{bucket}").client


@contextmanager
def _s3_errors(action: str, uri: str) -> Iterator[None]:
    import urllib3.exceptions
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        detail = f"{err.get('Code', 'error')}: {err.get('Message') or exc}"
        raise ArtifactStoreError(f"checkpoint {uri}: cannot {action}: {detail}", location=uri) from exc
    except (BotoCoreError, Boto3Error, urllib3.exceptions.HTTPError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactStoreError(f"checkpoint {uri}: cannot {action}: {detail}", location=uri) from exc


def _unsigned(note: str) -> Checkpoint:
    # Only for notes this module just signed: their body is everything before the blank line.
    return parse_body(note[: note.rfind("\n\n") + 1])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
