"""The shared secret that guards a serving app's ``POST /reload``.

The server is started with it (``govflow serve --reload-token-file PATH``, or the environment
GOVFLOW_SERVE_TOKEN / GOVFLOW_SERVE_TOKEN_FILE); the ``serving`` deploy target reads the same
environment and sends it as ``Authorization: Bearer TOKEN``. A server started without one has
``/reload`` off. /reload cannot choose what is loaded, but each call makes the server query the
registry and may fetch and verify an artifact, so an anonymous caller must not drive it.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from registry.config import env
from registry.errors import InvalidInput

TOKEN_ENV = "GOVFLOW_SERVE_TOKEN"
TOKEN_FILE_ENV = "GOVFLOW_SERVE_TOKEN_FILE"
# Long enough that guessing is not an attack: `secrets.token_urlsafe(32)` gives 43 characters.
MIN_LENGTH = 16
TURN_ON = f"start govflow serve with --reload-token-file PATH (or {TOKEN_ENV}) to turn it on"


def checked_token(value: str, source: str) -> str:
    """``value`` stripped; refuses (``InvalidInput`` naming ``source``) a short or non-ASCII token."""
    token = value.strip()
    if len(token) < MIN_LENGTH:
        raise InvalidInput(
            f"{source}: the reload token has {len(token)} characters, at least {MIN_LENGTH} needed "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)",
            field=source,
        )
    if not token.isascii() or not token.isprintable() or " " in token:
        raise InvalidInput(f"{source}: the reload token must be printable ASCII without spaces", field=source)
    return token


def _from_file(path: Path | str, source: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InvalidInput(f"{source}: cannot read {path}: {reason}", field=source) from None
    return checked_token(text, source)


def configured_token(path: Path | str | None = None) -> str | None:
    """The token a server guards ``/reload`` with: the file at ``path``, else GOVFLOW_SERVE_TOKEN,
    else the file GOVFLOW_SERVE_TOKEN_FILE names; None when none is set (``/reload`` is off).

    Refuses (``InvalidInput`` naming the source) a file that cannot be read, and a token shorter
    than 16 characters or with spaces or non-ASCII characters.
    """
    if path is not None:
        return _from_file(path, "--reload-token-file")
    value = env(TOKEN_ENV)
    if value is not None:
        return checked_token(value, TOKEN_ENV)
    file = env(TOKEN_FILE_ENV)
    if file is not None:
        return _from_file(file, TOKEN_FILE_ENV)
    return None


def client_token() -> str | None:
    """The token a deploy target sends, from the same environment; None when none is set."""
    return configured_token()


def matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``, compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("ascii"))
