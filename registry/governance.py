"""The policy kept in the registry, and the events only the registry writes for its clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from registry import identity, names, policy_record, queries
from registry.base import RegistryBase, now
from registry.entities import AuditEvent, PolicyInfo
from registry.errors import InvalidInput, UnsafeModel
from registry.policy import SERVER_DEFAULTS, Policy
from registry.refs import parse_ref
from registry.serialization import PICKLE_FORMATS
from registry.validate import check_actor, check_json, check_name, check_text, check_version


class Governance(RegistryBase):
    """``policy show | set | history``, deploy events and pickle-load events."""

    def whoami(self) -> str:
        """The name this registry records as the actor: the authenticated principal, else
        ``GOVFLOW_ACTOR`` or the OS user (embedded)."""
        return identity.actor_for(None)

    def policy_info(self) -> PolicyInfo:
        """The policy in force, its sha256, who set it and when (an empty registry records its seed)."""
        with self.db.read() as conn:
            info = policy_record.info(conn)
        if info is not None:
            return info
        who = identity.actor_for(None)

        def seed(conn: Connection) -> PolicyInfo:
            self._policy_in_force(conn, who, now())
            return policy_record.info(conn)  # type: ignore[return-value]

        return self.db.transact(seed)

    def policy_history(self) -> list[PolicyInfo]:
        """Every policy that was in force, oldest first."""
        with self.db.read() as conn:
            return policy_record.history(conn)

    def set_policy(
        self,
        policy: Policy | str | Path | dict[str, Any],
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> PolicyInfo:
        """Put ``policy`` (a Policy, a file, or a mapping) in force; admin only, audited as ``policy.set``.

        On a server, keys a file or mapping leaves out take the server's defaults, and turning
        ``authenticated_approvals`` off is refused without an authenticated admin and a reason.
        """
        new = Policy.coerce(policy, defaults=SERVER_DEFAULTS if self.server_mode else None)
        _check_approver_names(new)
        reason = check_text(reason, "reason")
        identity.require("policy", "change the policy")
        caller = identity.current()
        if self.server_mode:
            policy_record.check_server_change(new, caller, reason)
        who = identity.actor_for(actor)
        on_server = self.server_mode and caller.authenticated
        info = self.db.transact(
            lambda conn: policy_record.set_current(
                conn, new, actor=who, at=now(), reason=reason, append=self._audit, on_server=on_server
            )
        )
        self._fallback, self._explicit = new, None  # this caller just chose the policy in force
        return info

    def record_deployment(
        self,
        model: str,
        version: int,
        *,
        target: str,
        ok: bool,
        payload: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> AuditEvent:
        """Audit a deploy of ``model/version`` to ``target`` (``model.deployed`` or ``model.deploy_failed``)."""
        check_name(model, "model")
        check_version(version)
        check_actor(target, "target")
        if not isinstance(ok, bool):
            raise InvalidInput(f"ok: {ok!r} must be true or false", field="ok")
        if payload is not None and not isinstance(payload, dict):
            raise InvalidInput(f"payload: {type(payload).__name__} is not a mapping", field="payload")
        check_json(payload or {}, "payload")
        identity.require("deploy", "record a deployment")
        who = identity.actor_for(actor)
        action = "model.deployed" if ok else "model.deploy_failed"
        body = {**(payload or {}), "target": target}

        def work(conn: Connection) -> AuditEvent:
            queries.version_row(conn, model, version)
            return self._audit(conn, now(), who, action, model, version, body)

        return self.db.transact(work)

    def note_pickle_load(
        self, model: str, version: int, *, ref: str, sha256: str, fmt: str, actor: str | None = None
    ) -> AuditEvent:
        """Audit a permitted pickle load (``model.pickle_loaded``) before the bytes are unpickled.

        Refuses a caller without the ``load`` permission, a policy that allows no pickle loads,
        and a ref, sha256 or format that is not this version's stored artifact; nothing is written.
        """
        check_name(model, "model")
        check_version(version)
        for label, text in (("ref", ref), ("sha256", sha256), ("format", fmt)):
            if not isinstance(text, str) or not text or len(text) > 300:
                raise InvalidInput(f"{label}: {text!r} must be a short string", field=label)
        identity.require("load", "record a pickle load")
        try:
            named, number, alias = parse_ref(ref)
        except InvalidInput:
            raise InvalidInput(f"ref: {ref!r} is not NAME/VERSION or NAME@ALIAS", field="ref") from None
        who = identity.actor_for(actor)
        body = {"ref": ref, "sha256": sha256, "format": fmt}

        def work(conn: Connection) -> AuditEvent:
            row = queries.version_row(conn, model, version)
            stored = policy_record.current(conn)
            if not (stored[1] if stored is not None else self._fallback).allow_pickle:
                raise UnsafeModel(
                    f"{model}/{version}: the policy in force allows no pickle loads (allow_pickle = false)",
                    model=model,
                    version=version,
                )
            points_at = number
            if points_at is None and named == model and alias is not None:
                points_at = queries.resolve_alias(conn, named, alias).version
            if named != model or points_at != version:
                raise InvalidInput(f"ref: {ref} does not name {model}/{version}", field="ref", model=model)
            if fmt not in PICKLE_FORMATS or fmt != row.artifact_format:
                raise InvalidInput(
                    f"format: {model}/{version} is stored as {row.artifact_format}, not {fmt}; only a "
                    "pickle or joblib artifact's load is audited",
                    field="format",
                    model=model,
                )
            if sha256 != row.artifact_sha256:
                raise InvalidInput(
                    f"sha256: {sha256} is not the artifact of {model}/{version}", field="sha256", model=model
                )
            return self._audit(conn, now(), who, "model.pickle_loaded", model, version, body)

        return self.db.transact(work)


def _check_approver_names(policy: Policy) -> None:
    """Refuse an approvers list with a mixed-script name or two entries that look alike: the
    list grants by exact name, so a look-alike entry would be a second door for one person."""
    for stage, rule in policy.stages.items():
        field = f"stages.{getattr(stage, 'value', stage)}.approvers"
        seen: list[str] = []
        for name in rule.approvers or []:
            names.check_script(name, field)
            names.refuse_lookalike(name, seen, field=field, kind="approver")
            seen.append(name)
