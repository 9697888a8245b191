"""The public registry API: one method per CLI command, pydantic models out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy.engine import Connection

from registry import identity, lifecycle, listing, queries, registration, servable
from registry.annotations import Annotations
from registry.artifacts import Blob
from registry.artifacts.base import check_digest
from registry.auth.admin import UserAdmin
from registry.base import now
from registry.config import env
from registry.decisions import Decisions
from registry.entities import (
    ModelSummary,
    ModelVersion,
    Page,
    ProductionAt,
    RollbackResult,
    StageChange,
    VersionRef,
    VersionSpec,
)
from registry.errors import ArtifactNotFound, InvalidInput, RollbackRefused
from registry.filters import check_limit, parse_filters
from registry.governance import Governance
from registry.model_io import ModelIO
from registry.refs import parse_ref
from registry.stages import Stage, check_transition, parse_stage
from registry.trail import AuditTrail
from registry.validate import check_impact, check_name, check_text, check_version


class Registry(ModelIO, Decisions, Governance, Annotations, AuditTrail, UserAdmin):
    """The model registry: versions, lineage, stages, aliases, approvals, evidence, audit.

    ``Registry()`` reads ``GOVFLOW_REGISTRY_URL``, ``GOVFLOW_ARTIFACT_ROOT`` and
    ``GOVFLOW_POLICY``; keyword arguments override them. An empty database gets the schema; an
    outdated one is refused until ``upgrade()``.
    """

    def __new__(cls, url: str | None = None, *args: Any, **kwargs: Any) -> Any:
        # An http(s) URL means client mode: the same API, served by ``govflow server``.
        target = url or env("GOVFLOW_REGISTRY_URL") or ""
        if cls is Registry and target.startswith(("http://", "https://")):
            from registry.remote import RemoteRegistry

            return RemoteRegistry(target, *args, **kwargs)
        return super().__new__(cls)

    # --- registration ---------------------------------------------------------------------

    def register(
        self,
        name: str,
        artifact: str | Path,
        *,
        actor: str | None = None,
        artifact_format: str = "file",
        **fields: Any,
    ) -> ModelVersion:
        """Store the artifact, then register a new version of ``name`` in one transaction.

        ``fields`` are those of ``VersionSpec`` (metrics, params, tags, lineage, input_schema,
        drift_reference, description). Refuses a bad name or a non-finite metric before writing.
        Warns (``ServingWarning``, naming the fix) when the policy in force would keep the version
        out of production: a pickle or joblib artifact without ``allow_pickle``, or no input
        schema where the production rule sets ``input_schema``.
        """
        who, spec = self._check_registration(name, artifact_format, actor, fields)
        blob = self.artifacts.put(Path(artifact))  # invariant 7: bytes before the row
        return self._insert_version(name, who, blob, artifact_format, spec)

    def register_stored(
        self,
        name: str,
        sha256: str,
        *,
        actor: str | None = None,
        artifact_format: str = "file",
        **fields: Any,
    ) -> ModelVersion:
        """Register a blob already in the artifact store (uploaded first, as the server does)."""
        who, spec = self._check_registration(name, artifact_format, actor, fields)
        blob = self.artifacts.stat(check_digest(sha256))
        if blob is None:
            raise ArtifactNotFound(f"sha256: no stored artifact {sha256}; upload it first", location=sha256)
        blob = Blob(uri=self.artifacts.uri_for(sha256), sha256=sha256, size=blob.size)
        return self._insert_version(name, who, blob, artifact_format, spec)

    def _check_registration(
        self, name: str, artifact_format: str, actor: str | None, fields: dict[str, Any]
    ) -> tuple[str, VersionSpec]:
        spec = registration.check_spec(name, artifact_format, fields)
        identity.require("register", "register a version")
        return identity.actor_for(actor), spec

    def _insert_version(
        self, name: str, who: str, blob: Blob, artifact_format: str, spec: VersionSpec
    ) -> ModelVersion:
        at = now()
        metrics = {k: float(v) for k, v in spec.metrics.items()}
        lineage = spec.lineage

        def work(conn: Connection) -> tuple[int, list[servable.Unservable]]:
            # A registry holds no version without a policy; the one in force judges servability.
            _, policy = self._policy_in_force(conn, who, at)
            number = registration.insert_version(
                conn,
                name=name,
                actor=who,
                at=at,
                blob=blob,
                artifact_format=artifact_format,
                spec=spec,
                metrics=metrics,
            )
            self._audit(
                conn,
                at,
                who,
                "version.registered",
                name,
                number,
                registration.event_payload(blob, artifact_format, spec, metrics),
            )
            return number, servable.serving_problems(artifact_format, spec.input_schema, policy)

        number, unservable = self.db.transact(work)
        servable.warn_unservable(name, number, unservable)  # after the commit: only a stored version warns
        return ModelVersion(
            model=name,
            version=number,
            stage=Stage.DEVELOPMENT,
            artifact={"uri": blob.uri, "sha256": blob.sha256, "size": blob.size, "format": artifact_format},
            params=spec.params,
            metrics=metrics,
            tags=spec.tags,
            lineage=lineage,
            input_schema=spec.input_schema,
            drift_reference=spec.drift_reference,
            description=spec.description,
            registered_by=who,
            registered_at=at,
            stage_changed_at=at,
            review_round=0,
        )

    # --- reads ----------------------------------------------------------------------------

    def get(self, ref: str) -> ModelVersion:
        """A version by ``name/VERSION`` or ``name@ALIAS``, with approvals and evidence."""
        name, number, alias = parse_ref(ref)
        with self.db.read() as conn:
            if alias is not None:
                number = queries.resolve_alias(conn, name, alias).version
            assert number is not None
            return queries.full_version(conn, name, number)

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version, with approvals and evidence; refuses an unknown model or version."""
        check_name(name)
        check_version(version)
        with self.db.read() as conn:
            return queries.full_version(conn, name, version)

    def resolve(self, ref: str) -> VersionRef:
        """The cheap lookup deploy targets use: ``name@production`` -> version and artifact."""
        name, number, alias = parse_ref(ref)
        with self.db.lookup() as conn:
            if alias is not None:
                return queries.resolve_alias(conn, name, alias)
            row = queries.version_row(conn, name, number or 0)
            return VersionRef(
                model=name,
                version=row.version,
                stage=Stage(row.stage),
                artifact_uri=row.artifact_uri,
                artifact_sha256=row.artifact_sha256,
                artifact_format=row.artifact_format,
            )

    def versions(
        self,
        name: str,
        *,
        limit: int | None = None,
        page_token: str | None = None,
        stage: str | Stage | None = None,
        alias: str | None = None,
        tags: dict[str, str] | list[str] | None = None,
        metrics: list[str] | str | None = None,
        with_decisions: bool = False,
        before: int | None = None,
    ) -> Page[ModelVersion]:
        """A model's versions, newest first: a list whose ``next_page_token`` fetches the next page.

        ``limit`` (1 to 10000) caps the page; without it every matching version is returned.
        Filters must all hold for a version: ``stage``, ``alias``, ``tags`` (``{key: value}`` or
        ``["key=value"]``), ``metrics`` (``"auc>=0.8"``; > >= < <= =). ``before`` keeps versions
        numbered below it (give it or ``page_token``, not both). Approvals, evidence and waivers
        are None (not loaded) unless ``with_decisions``. Refuses bad filters naming them, and a
        page token not issued for this model and these filters.
        """
        check_name(name)
        limit = check_limit(limit)
        found = parse_filters(stage, alias, tags, metrics)
        if before is not None:
            check_version(before, "before")
            if page_token is not None:
                raise InvalidInput("before: give before or page_token, not both", field="before")
        if not isinstance(with_decisions, bool):
            raise InvalidInput(f"with_decisions: {with_decisions!r} must be true or false", field="with_decisions")
        with self.db.read() as conn:
            return listing.list_versions(
                conn,
                name,
                limit=limit,
                page_token=page_token,
                before=before,
                filters=found,
                with_decisions=with_decisions,
            )

    def models(
        self,
        *,
        limit: int | None = None,
        page_token: str | None = None,
        stage: str | Stage | None = None,
        alias: str | None = None,
        tags: dict[str, str] | list[str] | None = None,
        metrics: list[str] | str | None = None,
    ) -> Page[ModelSummary]:
        """Models by name: a list whose ``next_page_token`` fetches the next page.

        With filters, only models having a version that matches them all (as in ``versions``).
        """
        limit = check_limit(limit)
        found = parse_filters(stage, alias, tags, metrics)
        with self.db.read() as conn:
            return listing.list_models(conn, limit=limit, page_token=page_token, filters=found)

    def history(self, name: str) -> list[StageChange]:
        """The model's stage history, oldest first."""
        check_name(name)
        with self.db.read() as conn:
            return queries.stage_changes(conn, name)

    def production_at(self, name: str, at: datetime) -> ProductionAt:
        """Which version was in production at ``at``, and who promoted and approved it."""
        check_name(name)
        if not isinstance(at, datetime):
            raise InvalidInput(f"time: {at!r} is not a datetime", field="time")
        if at.tzinfo is None:
            raise InvalidInput("time: give a timezone (e.g. 2026-03-03T12:00:00Z)", field="time")
        try:
            instant = at.astimezone(UTC)
        except OverflowError:
            raise InvalidInput(
                f"time: {at.isoformat()} is outside the representable range", field="time"
            ) from None
        with self.db.read() as conn:
            return queries.production_at(conn, name, instant)

    def impact(
        self, *, dataset: str | None = None, digest: str | None = None, commit: str | None = None
    ) -> list[dict[str, Any]]:
        """Versions that used a dataset (URI and/or sha256 digest) or a code commit (or prefix).

        Refuses (``InvalidInput`` naming the argument) a value that is not a string, none of
        them, and a commit shorter than 4 characters.
        """
        dataset, digest, commit = check_impact(dataset, digest, commit)
        with self.db.read() as conn:
            if commit is not None:
                return queries.impact(conn, commit=commit)
            return queries.impact(conn, digest=digest, uri=dataset)

    # --- lifecycle ------------------------------------------------------------------------

    def transition(
        self,
        name: str,
        version: int,
        stage: str | Stage,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> ModelVersion:
        """Move a version along the stage graph; entering a stage enforces the policy.

        Entering production archives the previous production version and moves the
        ``production`` alias, all in one transaction.
        """
        check_name(name)
        check_version(version)
        target = parse_stage(stage)
        reason = check_text(reason, "reason")
        if target == Stage.STAGING:
            identity.require("stage", "move a version to staging")
        else:
            identity.require("transition", f"move a version to {target.value}")
        who = identity.actor_for(actor)
        at = now()

        def work(conn: Connection) -> ModelVersion:
            if target == Stage.PRODUCTION:  # the version and the one it replaces, in one query
                row, old = queries.version_and_production(conn, name, version)
            else:
                row, old = queries.version_row(conn, name, version), None
            current = Stage(row.stage)
            check_transition(current, target, model=name, version=version)
            sha, policy = self._policy_in_force(conn, who, at)
            seen: dict[str, Any] = {}
            approvers = lifecycle.check_entry(conn, policy, row, name, target, at, seen)
            payload: dict[str, Any] = {
                "from": current.value,
                "to": target.value,
                "reason": reason,
                "policy_sha256": sha,
            }
            if target == Stage.PRODUCTION:
                if old is not None:
                    lifecycle.move(
                        conn,
                        old,
                        Stage.ARCHIVED,
                        kind="demote",
                        actor=who,
                        reason=f"superseded by version {version}",
                        at=at,
                    )
                    payload["replaced"] = old.version
                lifecycle.move(
                    conn, row, target, kind="promote", actor=who, reason=reason, at=at, approved_by=approvers
                )
                lifecycle.point_alias(
                    conn,
                    row.model_id,
                    lifecycle.PRODUCTION_ALIAS,
                    row,
                    actor=who,
                    at=at,
                    previous=old.version if old is not None else None,
                )
                payload["approved_by"] = approvers
                action = "version.promoted"
            else:
                lifecycle.move(conn, row, target, kind="transition", actor=who, reason=reason, at=at)
                if current == Stage.PRODUCTION:
                    lifecycle.point_alias(
                        conn,
                        row.model_id,
                        lifecycle.PRODUCTION_ALIAS,
                        None,
                        actor=who,
                        at=at,
                        previous=version,
                    )
                action = "version.transitioned"
            self._audit(conn, at, who, action, name, version, payload)
            changed = {"stage": target.value, "review_round": row.review_round + 1, "stage_changed_at": at}
            moved = SimpleNamespace(**{**row._mapping, **changed})
            return queries.full_version(conn, name, version, row=moved, seen=seen)

        return self.db.transact(work)

    def rollback(
        self, name: str, *, reason: str, actor: str | None = None, expected_version: int | None = None
    ) -> RollbackResult:
        """Demote the production version and restore the one before it, in one transaction.

        The demoted version is marked rolled back and is never a rollback target again. Refused,
        with nothing changed, when there is no production version or nothing to restore.
        """
        check_name(name)
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("reason: a rollback needs a reason", field="reason")
        check_text(reason, "reason")
        if expected_version is not None:
            check_version(expected_version, "expected_version")
        identity.require("rollback", "roll back a model")
        who = identity.actor_for(actor)
        at = now()

        def work(conn: Connection) -> RollbackResult:
            model = queries.model_row(conn, name)
            sha, policy = self._policy_in_force(conn, who, at)
            current, target = lifecycle.plan_rollback(conn, policy, model.id, name)
            if expected_version is not None and current.version != expected_version:
                raise RollbackRefused(
                    f"{name}/{expected_version} is no longer in production (version {current.version} is); "
                    "not rolling back a version nobody asked about",
                    model=name,
                    version=expected_version,
                )
            approvers = lifecycle.last_approvers(conn, target.id)
            lifecycle.move(
                conn,
                current,
                Stage.ARCHIVED,
                kind="rollback",
                actor=who,
                reason=reason,
                at=at,
                rolled_back=True,
            )
            lifecycle.move(
                conn,
                target,
                Stage.PRODUCTION,
                kind="rollback",
                actor=who,
                reason=reason,
                at=at,
                approved_by=approvers,
            )
            lifecycle.point_alias(
                conn, model.id, lifecycle.PRODUCTION_ALIAS, target, actor=who, at=at, previous=current.version
            )
            self._audit(
                conn,
                at,
                who,
                "model.rolled_back",
                name,
                target.version,
                {
                    "from_version": current.version,
                    "to_version": target.version,
                    "reason": reason,
                    "policy_sha256": sha,
                },
            )
            return RollbackResult(
                model=name, demoted=current.version, restored=target.version, reason=reason, actor=who, at=at
            )

        return self.db.transact(work)
