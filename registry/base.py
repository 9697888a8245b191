"""Shared plumbing of the registry: configuration, database, artifact store, audit appends."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from registry import audit, identity, policy_record
from registry.artifacts import ArtifactStore, open_store
from registry.config import Settings
from registry.db import Database
from registry.db.migrate import current_revision, ensure_schema, upgrade
from registry.entities import AuditEvent
from registry.errors import InvalidInput, PolicyError
from registry.policy import SERVER_DEFAULTS, Policy
from registry.validate import check_json, check_name, check_version

ACTION_RE = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+")


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


class RegistryBase:
    """The model registry: versions, lineage, stages, aliases, approvals, evidence, audit.

    ``Registry()`` reads ``GOVFLOW_REGISTRY_URL``, ``GOVFLOW_ARTIFACT_ROOT`` and
    ``GOVFLOW_POLICY``; keyword arguments override them. An empty database gets the schema; an
    outdated one is refused until ``upgrade()``. ``server=True`` is the registry ``govflow
    server`` serves: a policy's missing keys take ``SERVER_DEFAULTS``, and typed names count only
    when an admin said so on the server (``registry.service.strict``).
    """

    def __init__(
        self,
        url: str | None = None,
        artifact_root: str | None = None,
        policy: Policy | str | Path | None = None,
        *,
        create: bool = True,
        default_policy: Policy | None = None,
        server: bool = False,
    ) -> None:
        env = Settings.from_env()
        self.url = url or env.url
        self.artifact_root = artifact_root or env.artifact_root
        self.server_mode = server
        # The policy first: a bad policy file must leave no new database behind.
        source = "policy" if policy is not None else "GOVFLOW_POLICY"
        defaults = SERVER_DEFAULTS if server else None
        given = policy if isinstance(policy, Policy) else Policy.load(policy or env.policy, defaults=defaults)
        explicit = given if (policy is not None or env.policy) else None
        self.db = Database(self.url)
        if server and explicit is not None and not explicit.authenticated_approvals:
            self._refuse_lax_seed(explicit, source)  # before a new database gets its schema
        if create:
            ensure_schema(self.db)
        self._artifacts: ArtifactStore | None = None
        self._fallback = explicit or default_policy or (Policy.server_default() if server else Policy())
        self._explicit = policy_record.digest(explicit)[0] if explicit is not None else None
        self._source = source
        # A server first holds a stored policy to its rules (strict.hold_to_server_rules), then checks.
        if create and explicit is not None and not server:
            with self.db.lookup() as conn:
                self._check_explicit(policy_record.current(conn))

    def _refuse_lax_seed(self, explicit: Policy, source: str) -> None:
        """On a server, refuse a caller's policy counting typed names, unless it is the one in
        force because an admin set it so on the server."""
        if current_revision(self.db) is not None:
            ensure_schema(self.db)  # an outdated schema is refused as usual
            with self.db.lookup() as conn:
                if policy_record.lax_allowed(conn, policy_record.digest(explicit)[0]):
                    return
        self.db.dispose()
        raise PolicyError(
            f"{source}: authenticated_approvals = false is refused on a server; only an admin's "
            "`govflow policy set FILE --reason …` on the server can turn it off",
            field="authenticated_approvals",
        )

    def _check_explicit(self, stored: tuple[str, Policy] | None) -> None:
        """Refuse a caller's policy that differs from the one the registry keeps."""
        if stored is not None and self._explicit is not None and stored[0] != self._explicit:
            raise PolicyError(
                f"{self._source}: differs from the registry's policy in force ({stored[0][:12]}); "
                "a client cannot change it: use `govflow policy set`",
                field="policy",
            )

    @property
    def policy(self) -> Policy:
        """The policy in force, as stored in the registry."""
        with self.db.lookup() as conn:
            stored = policy_record.current(conn)
        if stored is not None:
            self._check_explicit(stored)
            return stored[1]
        return self._fallback  # a registry with no policy holds no version yet

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
            payload={**payload, "via": identity.current().via()},
            db_user=self.db.db_user,
        )

    def _policy_in_force(self, conn: Connection, actor: str, at: datetime) -> tuple[str, Policy]:
        """(sha256, policy) in force, read inside the caller's transaction.

        An empty registry is seeded here, by its first registration or decision, with the caller's
        policy or the defaults (audited); a caller's policy that differs from the stored one is
        refused.
        """
        stored = policy_record.current(conn)
        if stored is None:
            if self._explicit:
                reason = f"seeded from {self._source}"
                reason += (
                    " (server mode: keys it leaves out take the server's defaults)" if self.server_mode else ""
                )
            else:
                reason = "seeded with the server's defaults" if self.server_mode else "seeded with the defaults"
            info = policy_record.set_current(
                conn,
                self._fallback,
                actor=actor,
                at=at,
                reason=reason,
                append=self._audit,
                on_server=self.server_mode,
            )
            return info.sha256, self._fallback
        self._check_explicit(stored)
        if (
            self.server_mode
            and not stored[1].authenticated_approvals
            and not policy_record.lax_allowed(conn, stored[0])
        ):
            # Written around the server (embedded, while it ran): typed names must not count here.
            raise PolicyError(
                f"policy {stored[0][:12]} counts typed names (authenticated_approvals = false) but was not "
                "set on this server by an admin; restart the server, or an admin runs `govflow policy set --reason`",
                field="authenticated_approvals",
            )
        return stored

    def policy_document(self, sha256: str) -> dict[str, Any] | None:
        """The policy recorded under ``sha256`` (as every decision event names it), or None."""
        with self.db.read() as conn:
            return policy_record.document(conn, sha256)

    def record(
        self,
        action: str,
        *,
        model: str | None = None,
        version: int | None = None,
        payload: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> AuditEvent:
        """Append a free-standing audit event (a deploy, a pickle opt-in, a degraded server).

        Refuses the registry's own namespaces (``version.``, ``alias.``, ``evidence.``,
        ``policy.``, ``model.rolled_back``…): those events are written only with the state they
        describe. Custom events use ``custom.``.
        """
        if not isinstance(action, str) or len(action) > 64 or not ACTION_RE.fullmatch(action):
            raise InvalidInput(
                f"action: {action!r} must be dotted lowercase words (e.g. custom.note), at most 64 characters",
                field="action",
            )
        if audit.is_reserved(action):
            raise InvalidInput(
                f"action: {action} is in the registry's own namespace; custom events use custom.",
                field="action",
            )
        if model is not None:
            check_name(model, "model")
        if version is not None:
            check_version(version)
        if payload is not None and not isinstance(payload, dict):
            raise InvalidInput(f"payload: {type(payload).__name__} is not a mapping", field="payload")
        check_json(payload or {}, "payload")
        identity.require("record", "record an audit event")
        who = identity.actor_for(actor)
        return self.db.transact(
            lambda conn: self._audit(conn, now(), who, action, model, version, payload or {})
        )
