"""Shared plumbing of the registry: configuration, database, artifact store, audit appends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from registry import audit
from registry.artifacts import ArtifactStore, open_store
from registry.config import Settings, resolve_actor
from registry.db import Database
from registry.db.migrate import ensure_schema, upgrade
from registry.entities import AuditEvent
from registry.errors import InvalidInput
from registry.policy import Policy


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


class RegistryBase:
    """The model registry: versions, lineage, stages, aliases, approvals, evidence, audit.

    ``Registry()`` reads ``GOVFLOW_REGISTRY_URL``, ``GOVFLOW_ARTIFACT_ROOT`` and
    ``GOVFLOW_POLICY``; keyword arguments override them. An empty database gets the schema; an
    outdated one is refused until ``upgrade()``.
    """

    def __init__(
        self,
        url: str | None = None,
        artifact_root: str | None = None,
        policy: Policy | str | Path | None = None,
        *,
        create: bool = True,
    ) -> None:
        env = Settings.from_env()
        self.url = url or env.url
        self.artifact_root = artifact_root or env.artifact_root
        self.db = Database(self.url)
        if create:
            ensure_schema(self.db)
        self.policy = policy if isinstance(policy, Policy) else Policy.load(policy or env.policy)
        self._artifacts: ArtifactStore | None = None

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store for ``artifact_root`` (opened on first use)."""
        if self._artifacts is None:
            self._artifacts = open_store(self.artifact_root)
        return self._artifacts

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()

    def upgrade(self) -> tuple[str | None, str | None]:
        """Apply pending schema migrations; return (revision before, revision after)."""
        return upgrade(self.db)

    # --- audit helper -----------------------------------------------------------------------

    def _audit(
        self,
        conn: Connection,
        at: datetime,
        actor: str,
        action: str,
        model: str | None,
        version: int | None,
        payload: dict[str, Any],
    ) -> AuditEvent:
        return audit.append(
            conn,
            at=at,
            actor=actor,
            action=action,
            model=model,
            version=version,
            payload=payload,
            db_user=self.db.db_user,
        )

    def record(
        self,
        action: str,
        *,
        model: str | None = None,
        version: int | None = None,
        payload: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> AuditEvent:
        """Append a free-standing audit event (a deploy, a pickle opt-in, a degraded server)."""
        who = resolve_actor(actor)
        if not action or len(action) > 64:
            raise InvalidInput(f"action: {action!r} must be 1 to 64 characters", field="action")
        return self.db.transact(
            lambda conn: self._audit(conn, now(), who, action, model, version, payload or {})
        )
