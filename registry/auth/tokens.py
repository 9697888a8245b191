"""API tokens: ``gft_<token_id>_<secret>``, stored only as a salted scrypt hash.

The token id (16 hex characters) finds the user's row with one indexed query; the secret
(32 random bytes, urlsafe base64) is what proves possession. Only the scrypt hash of the whole
token and its random salt are stored, so a copy of the database gives no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from registry.errors import Unauthenticated

PREFIX = "gft_"
TOKEN_RE = re.compile(r"gft_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
# scrypt cost: about 50 ms and 16 MiB per check, so a stolen hash is slow to brute-force.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
HASH_BYTES = 64
SALT_BYTES = 16


@dataclass(frozen=True)
class IssuedToken:
    """A freshly made token and what is stored for it (the token itself is never stored)."""

    token: str = field(repr=False)
    token_id: str
    salt: str
    hash: str = field(repr=False)


def parse(token: str) -> str:
    """The token id of a well-formed API token; refuses anything else with ``Unauthenticated``."""
    if not isinstance(token, str) or not token.startswith(PREFIX):
        raise Unauthenticated("API token: not a govflow token (expected gft_<id>_<secret>)")
    match = TOKEN_RE.fullmatch(token)
    if match is None:
        # Never echo the token: error lines end up in logs.
        raise Unauthenticated("API token: malformed (expected gft_ + 16 hex characters + _ + 43 characters)")
    return match.group(1)


def hash_token(token: str, salt: str) -> str:
    """The scrypt hash (hex) of ``token`` under the hex ``salt``."""
    digest = hashlib.scrypt(
        token.encode("utf-8"),
        salt=bytes.fromhex(salt),
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=HASH_BYTES,
    )
    return digest.hex()


def verify(token: str, salt: str, stored_hash: str) -> bool:
    """Whether ``token`` hashes to ``stored_hash`` (constant-time comparison)."""
    return hmac.compare_digest(hash_token(token, salt), stored_hash)


def issue() -> IssuedToken:
    """A new random token with its id, salt and hash."""
    token_id = secrets.token_hex(8)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_hex(SALT_BYTES)
    return IssuedToken(token=token, token_id=token_id, salt=salt, hash=hash_token(token, salt))
