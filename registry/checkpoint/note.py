"""The signed-note format (c2sp.org/signed-note), the checkpoint body and Ed25519 key files.

A note is text ending in a newline, a blank line, then signature lines
``— <key name> <base64(4-byte key id ‖ 64-byte Ed25519 signature)>``; the signature covers the
text including its last newline. The key id is the first 4 bytes of
SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key). Key files use the Go ``sumdb/note`` encodings:
``PRIVATE+KEY+<name>+<id hex>+<base64(0x01 ‖ seed)>`` (.key) and
``<name>+<id hex>+<base64(0x01 ‖ public key)>`` (.pub). The body is c2sp.org/tlog-checkpoint's:
origin, count (decimal) and head hash (base64 of its 32 bytes), one per line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, Field

from registry.errors import IntegrityError, InvalidInput

EM_DASH = "\u2014"
ED25519 = b"\x01"
MAX_NOTE = 64 * 1024  # a checkpoint is a few hundred bytes; refuse to slurp anything large


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
    _create(key_path, f"PRIVATE+KEY+{name}+{kid}+{b64(ED25519 + seed)}\n", 0o600)
    try:
        _create(pub_path, f"{name}+{kid}+{b64(ED25519 + pub)}\n", 0o644)
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
    return f"{text}\n{EM_DASH} {key.name} {b64(key.verifier.key_id + sig)}\n"


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
    return f"{origin}\n{count}\n{b64(bytes.fromhex(head_hash))}\n"


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


def b64(data: bytes) -> str:
    """Standard base64 (RFC 4648 section 4), as the spec uses throughout."""
    return base64.b64encode(data).decode("ascii")
