"""The registry an evidence pack names: where it lives, without credentials.

A pack is handed to auditors, so the name must be absolute (a relative SQLite path means
nothing on their machine) and must never carry a password, a user name or a query string
(where drivers also accept secrets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError


def registry_name(reg: Any) -> str:
    """The URL of ``reg`` (embedded or a server) as a pack prints it."""
    return safe_url(str(getattr(reg, "url", "") or ""))


def safe_url(url: str) -> str:
    """``url`` without user, password or query; a SQLite path made absolute."""
    if url.startswith(("http://", "https://")):
        return _http(url)
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError:
        return "(unparsable registry URL)"  # never echo what might hold a secret
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ":memory:"
        if database != ":memory:":
            database = str(Path(database).expanduser().resolve())
        return f"{parsed.drivername}:///{database}"
    clean = sa.engine.URL.create(
        parsed.drivername, host=parsed.host, port=parsed.port, database=parsed.database
    )
    return clean.render_as_string(hide_password=True)


def _http(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
