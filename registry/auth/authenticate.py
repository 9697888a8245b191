"""Authenticate a request's ``Authorization`` header: an API token or an OIDC JWT.

A verified token's scrypt check is cached for the process (keyed by the token's sha256), but
the user's row is read again on every request, so a revocation, an expiry or a rotation takes
effect on the very next request. The cache only skips the slow hash.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from registry.auth import tokens, users
from registry.auth.oidc import OIDCConfig, OIDCVerifier
from registry.db import Database
from registry.errors import InvalidInput, Unauthenticated
from registry.identity import ROLES
from registry.names import check_script

__all__ = ["Authenticator", "OIDCConfig", "Principal"]

CACHE_SIZE = 10_000
NO_CREDENTIAL = "no credential: send Authorization: Bearer <token>"


@dataclass(frozen=True)
class Principal:
    """Who a request is authenticated as, with which roles, and by what means."""

    name: str
    roles: frozenset[str]
    source: Literal["token", "oidc"]


class Authenticator:
    """Turns an ``Authorization`` header into a ``Principal``, or refuses it."""

    def __init__(self, db: Database, oidc: OIDCConfig | None = None) -> None:
        self.db = db
        self.oidc = OIDCVerifier(oidc) if oidc is not None else None
        # sha256(token) -> the stored hash the token was verified against.
        self._verified: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def authenticate(self, authorization_header: str | None) -> Principal:
        """The principal behind the header; ``Unauthenticated`` with one line otherwise."""
        credential = bearer(authorization_header)
        if credential.startswith(tokens.PREFIX):
            return self._token(credential)
        if credential.count(".") == 2:
            if self.oidc is None:
                raise Unauthenticated(
                    "JWT: OIDC is not configured on this server; use an API token (gft_...)"
                )
            name, roles = self.oidc.verify(credential)
            with self.db.lookup() as conn:
                try:
                    users.refuse_lookalike(conn, name, self.oidc.config.principal_claim)
                except InvalidInput as exc:
                    raise Unauthenticated(f"JWT claim {exc}") from None
            return Principal(name=name, roles=roles, source="oidc")
        raise Unauthenticated("credential: neither an API token (gft_...) nor a JWT")

    def _token(self, token: str) -> Principal:
        token_id = tokens.parse(token)
        with self.db.lookup() as conn:
            row = users.by_token_id(conn, token_id)
        if row is None:
            raise Unauthenticated("token not recognized (unknown, or replaced by a rotation)")
        if row.revoked_at is not None:
            raise Unauthenticated("token revoked")
        if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
            raise Unauthenticated("token expired")
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        if not self._cached(key, row.token_hash):
            if not tokens.verify(token, row.token_salt, row.token_hash):
                raise Unauthenticated("token not recognized (bad secret)")
            self._remember(key, row.token_hash)
        try:
            check_script(row.name, "principal")  # a user added before names were checked
        except InvalidInput as exc:
            raise Unauthenticated(f"token: {exc}; an admin must revoke this user and add it again") from None
        roles = frozenset(role for role in row.roles if role in ROLES)
        return Principal(name=row.name, roles=roles, source="token")

    def _cached(self, key: str, stored_hash: str) -> bool:
        with self._lock:
            known = self._verified.get(key)
            if known is None:
                return False
            self._verified.move_to_end(key)
        return hmac.compare_digest(known, stored_hash)

    def _remember(self, key: str, stored_hash: str) -> None:
        with self._lock:
            self._verified[key] = stored_hash
            self._verified.move_to_end(key)
            while len(self._verified) > CACHE_SIZE:
                self._verified.popitem(last=False)


def bearer(header: str | None) -> str:
    """The credential of an ``Authorization: Bearer <credential>`` header; refuses anything else."""
    if header is None:
        raise Unauthenticated(NO_CREDENTIAL)
    if not isinstance(header, str):
        raise Unauthenticated("authorization: must be text")
    if not header.strip():
        raise Unauthenticated(NO_CREDENTIAL)
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated(
            "authorization: only the Bearer scheme is accepted (Authorization: Bearer <token>)"
        )
    credential = credential.strip()
    if not credential:
        raise Unauthenticated(NO_CREDENTIAL)
    if any(ch.isspace() for ch in credential):
        raise Unauthenticated("authorization: the credential must not contain spaces")
    return credential
