"""Policies kept in the registry: each decision names the sha256 of the policy it was taken under."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.audit import canonical
from registry.db.tables import policies
from registry.policy import Policy

_KNOWN = sa.select(policies.c.sha256).where(policies.c.sha256 == sa.bindparam("s"))


def digest(policy: Policy) -> tuple[str, dict[str, Any]]:
    """(sha256 of the canonical JSON, the JSON document) of a policy."""
    document = json.loads(canonical(policy.model_dump(mode="json")))
    return hashlib.sha256(canonical(document)).hexdigest(), document


def ensure_recorded(
    conn: Connection,
    policy: Policy,
    *,
    actor: str,
    at: datetime,
    append: Callable[[Connection, datetime, str, str, str | None, int | None, dict[str, Any]], Any],
) -> str:
    """Record ``policy`` (with a ``policy.recorded`` event) unless already there; return its sha256."""
    sha, document = digest(policy)
    if conn.execute(_KNOWN, {"s": sha}).first() is None:
        conn.execute(
            policies.insert(), {"sha256": sha, "document": document, "recorded_at": at, "recorded_by": actor}
        )
        append(conn, at, actor, "policy.recorded", None, None, {"sha256": sha, "document": document})
    return sha


def document(conn: Connection, sha: str) -> dict[str, Any] | None:
    """The policy recorded under ``sha``, or None."""
    return conn.execute(sa.select(policies.c.document).where(policies.c.sha256 == sha)).scalar()
