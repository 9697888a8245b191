"""OIDC bearer JWTs: verified against one issuer, audience and JWKS with PyJWT.

Only asymmetric signatures (RS256, ES256) are accepted, so neither ``none`` nor an HMAC keyed
with the public key can pass. A configured claim names the principal; the groups claim maps to
roles, and a token whose groups map to no role is refused.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.errors import InvalidInput, Unauthenticated, first_invalid
from registry.identity import ROLES
from registry.validate import check_actor

ALGORITHMS = ("RS256", "ES256")
LEEWAY_SECONDS = 30
MAX_JWT_BYTES = 16_384
ENV = "GOVFLOW_OIDC_"


class OIDCConfig(BaseModel):
    """Where OIDC tokens come from and how their groups map to roles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(description="The expected `iss` claim, exactly.")
    audience: str = Field(description="The expected `aud` claim (this server's client id).")
    jwks_url: str = Field(description="The issuer's JWKS; https, or http on loopback only.")
    principal_claim: str = Field(default="preferred_username", description="Claim naming the principal.")
    groups_claim: str = Field(default="groups", description="Claim listing the principal's groups.")
    role_map: dict[str, list[str]] = Field(description="Group name -> roles it grants.")

    def __init__(self, **fields: Any) -> None:
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            raise first_invalid(exc, "OIDC config", "oidc") from None

    def model_post_init(self, _context: Any) -> None:
        for name, value in (("issuer", self.issuer), ("audience", self.audience)):
            if not value.strip():
                raise InvalidInput(f"{ENV}{name.upper()}: must not be empty", field=name)
        _check_jwks_url(self.jwks_url)
        if not self.role_map:
            raise InvalidInput(f"{ENV}ROLES: map at least one group, e.g. risk=approver", field="role_map")
        for group, roles in self.role_map.items():
            for role in roles:
                if role not in ROLES:
                    raise InvalidInput(
                        f"{ENV}ROLES: {group}={role!r}: {role!r} is not one of {', '.join(ROLES)}",
                        field="role_map",
                    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OIDCConfig | None:
        """The configuration from ``GOVFLOW_OIDC_*``; None when no issuer is set."""
        env = os.environ if environ is None else environ
        issuer = env.get(f"{ENV}ISSUER", "").strip()
        if not issuer:
            return None
        fields: dict[str, Any] = {"issuer": issuer}
        for key in ("AUDIENCE", "JWKS_URL"):
            value = env.get(f"{ENV}{key}", "").strip()
            if not value:
                raise InvalidInput(f"{ENV}{key}: must be set when {ENV}ISSUER is", field=key.lower())
            fields[key.lower()] = value
        for key in ("PRINCIPAL_CLAIM", "GROUPS_CLAIM"):
            value = env.get(f"{ENV}{key}", "").strip()
            if value:
                fields[key.lower()] = value
        fields["role_map"] = parse_role_map(env.get(f"{ENV}ROLES", ""))
        return cls(**fields)


def parse_role_map(text: str) -> dict[str, list[str]]:
    """``"ml-eng=pipeline;risk=approver,reader"`` -> ``{"ml-eng": ["pipeline"], "risk": [...]}``."""
    out: dict[str, list[str]] = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        group, sep, roles = item.partition("=")
        group = group.strip()
        names = [r.strip() for r in roles.split(",") if r.strip()]
        if not sep or not group or not names:
            raise InvalidInput(f"{ENV}ROLES: {item.strip()!r} must be GROUP=ROLE[,ROLE]", field="role_map")
        if group in out:
            raise InvalidInput(f"{ENV}ROLES: group {group!r} is given twice", field="role_map")
        out[group] = names
    return out


def _check_jwks_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise InvalidInput(f"{ENV}JWKS_URL: {url!r} must be https (http only on loopback)", field="jwks_url")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OIDCVerifier:
    """Verifies bearer JWTs for one configuration; the JWKS is fetched once and cached."""

    def __init__(self, config: OIDCConfig) -> None:
        self.config = config
        self._keys = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def verify(self, token: str) -> tuple[str, frozenset[str]]:
        """The principal name and roles a valid token carries; ``Unauthenticated`` otherwise."""
        if len(token) > MAX_JWT_BYTES:
            raise Unauthenticated(f"JWT: longer than {MAX_JWT_BYTES} bytes")
        claims = self._claims(token)
        cfg = self.config
        try:
            name = check_actor(claims.get(cfg.principal_claim), cfg.principal_claim)
        except InvalidInput as exc:
            raise Unauthenticated(f"JWT claim {exc}") from None
        groups = claims.get(cfg.groups_claim)
        if groups is None:
            raise Unauthenticated(f"JWT: claim {cfg.groups_claim!r} is missing, so no role can be given")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Unauthenticated(f"JWT claim {cfg.groups_claim}: must be a list of group names")
        roles = frozenset(role for group in groups for role in cfg.role_map.get(group, ()))
        if not roles:
            raise Unauthenticated(f"JWT: no group of {name} maps to a role on this server")
        return name, roles

    def _claims(self, token: str) -> dict[str, Any]:
        cfg = self.config
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            if alg not in ALGORITHMS:
                raise Unauthenticated(
                    f"JWT: algorithm {alg!r} is not accepted (only {', '.join(ALGORITHMS)})"
                )
            key = self._keys.get_signing_key(header.get("kid"))
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise Unauthenticated(f"JWT: cannot fetch the signing keys from {cfg.jwks_url}: {exc}") from None
        except jwt.PyJWKClientError:
            raise Unauthenticated("JWT: signed by a key the issuer does not publish (unknown kid)") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_jwt_reason(exc)) from None


def _jwt_reason(exc: jwt.PyJWTError) -> str:
    """One line for a PyJWT refusal."""
    reasons: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.ExpiredSignatureError, "JWT: token expired"),
        (jwt.ImmatureSignatureError, "JWT: token not yet valid (nbf or iat in the future)"),
        (jwt.InvalidIssuerError, "JWT: wrong issuer"),
        (jwt.InvalidAudienceError, "JWT: wrong audience"),
        (jwt.InvalidSignatureError, "JWT: bad signature"),
        (jwt.InvalidAlgorithmError, "JWT: algorithm not accepted"),
        (jwt.MissingRequiredClaimError, f"JWT: claim {getattr(exc, 'claim', '?')!r} is missing"),
        (jwt.InvalidKeyError, "JWT: the signing key does not fit the algorithm"),
        (jwt.DecodeError, "JWT: malformed token"),
    ]
    for cls, text in reasons:
        if isinstance(exc, cls):
            return text
    return f"JWT: refused ({type(exc).__name__})"
