"""The public registry API: one method per CLI command, pydantic models out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from registry import audit, lifecycle, queries
from registry.artifacts import ArtifactStore, open_store
from registry.config import Settings, resolve_actor
from registry.db import Database
from registry.db.migrate import ensure_schema, upgrade
from registry.db.tables import approvals, datasets, evidence, models, stage_history, versions
from registry.entities import (
    Approval,
    AuditEvent,
    Evidence,
    ModelSummary,
    ModelVersion,
    ProductionAt,
    RollbackResult,
    StageChange,
    VerifyReport,
    VersionRef,
    VersionSpec,
    check_name,
)
from registry.errors import AuditChainBroken, InvalidInput, Refused
from registry.model_io import ModelIO
from registry.policy import Policy
from registry.refs import parse_ref
from registry.stages import Stage, check_transition, parse_stage


def _now() -> datetime:
    return datetime.now(UTC)


def _spec_error(exc: ValidationError) -> InvalidInput:
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err["loc"]) or "version"
    return InvalidInput(f"{field}: {err['msg']}", field=field)


class Registry(ModelIO):
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
            lambda conn: self._audit(conn, _now(), who, action, model, version, payload or {})
        )

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
        """
        check_name(name)
        who = resolve_actor(actor)
        try:
            spec = VersionSpec(**fields)
        except ValidationError as exc:
            raise _spec_error(exc) from None
        blob = self.artifacts.put(Path(artifact))  # invariant 7: bytes before the row
        at = _now()
        metrics = {k: float(v) for k, v in spec.metrics.items()}
        lineage = spec.lineage

        def work(conn: Connection) -> int:
            insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
            conn.execute(
                insert(models)
                .values(name=name, description=spec.description, created_at=at, created_by=who)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            model_id, number = conn.execute(
                models.update()
                .where(models.c.name == name)
                .values(last_version=models.c.last_version + 1)
                .returning(models.c.id, models.c.last_version)
            ).one()
            version_id = conn.execute(
                versions.insert()
                .values(
                    model_id=model_id,
                    version=number,
                    stage=Stage.DEVELOPMENT.value,
                    review_round=0,
                    artifact_uri=blob.uri,
                    artifact_sha256=blob.sha256,
                    artifact_size=blob.size,
                    artifact_format=artifact_format,
                    params=spec.params,
                    metrics=metrics,
                    tags=spec.tags,
                    input_schema=[c.model_dump() for c in spec.input_schema],
                    drift_reference=spec.drift_reference,
                    description=spec.description,
                    code_repo=lineage.code.repo,
                    code_commit=lineage.code.commit,
                    code_dirty=lineage.code.dirty,
                    run_id=lineage.run.flow_run_id,
                    flow_name=lineage.run.flow_name,
                    registered_by=who,
                    registered_at=at,
                    stage_changed_at=at,
                )
                .returning(versions.c.id)
            ).scalar_one()
            if lineage.datasets:
                conn.execute(
                    datasets.insert(),
                    [{"version_id": version_id, **d.model_dump(mode="json")} for d in lineage.datasets],
                )
            conn.execute(
                stage_history.insert().values(
                    model_id=model_id,
                    version_id=version_id,
                    version=number,
                    from_stage=None,
                    to_stage=Stage.DEVELOPMENT.value,
                    kind="register",
                    actor=who,
                    at=at,
                )
            )
            self._audit(
                conn,
                at,
                who,
                "version.registered",
                name,
                number,
                {
                    "artifact": {
                        "sha256": blob.sha256,
                        "uri": blob.uri,
                        "size": blob.size,
                        "format": artifact_format,
                    },
                    "datasets": [
                        {"role": d.role.value, "uri": d.uri, "sha256": d.sha256} for d in lineage.datasets
                    ],
                    "code": lineage.code.model_dump(),
                    "run": lineage.run.model_dump(),
                    "metrics": metrics,
                },
            )
            return number

        number = self.db.transact(work)
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
        with self.db.read() as conn:
            return queries.full_version(conn, name, version)

    def resolve(self, ref: str) -> VersionRef:
        """The cheap lookup deploy targets use: ``name@production`` -> version and artifact."""
        name, number, alias = parse_ref(ref)
        with self.db.engine.connect() as conn:
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

    def versions(self, name: str) -> list[ModelVersion]:
        """All versions of a model, newest first (without approvals and evidence)."""
        with self.db.read() as conn:
            return queries.list_versions(conn, name)

    def models(self) -> list[ModelSummary]:
        """All models."""
        with self.db.read() as conn:
            return queries.list_models(conn)

    def history(self, name: str) -> list[StageChange]:
        """The model's stage history, oldest first."""
        with self.db.read() as conn:
            return queries.stage_changes(conn, name)

    def production_at(self, name: str, at: datetime) -> ProductionAt:
        """Which version was in production at ``at``, and who promoted and approved it."""
        if at.tzinfo is None:
            raise InvalidInput("time: give a timezone (e.g. 2026-03-03T12:00:00Z)", field="time")
        with self.db.read() as conn:
            return queries.production_at(conn, name, at.astimezone(UTC))

    def impact(
        self, *, dataset: str | None = None, digest: str | None = None, commit: str | None = None
    ) -> list[dict[str, Any]]:
        """Versions that used a dataset (URI and/or sha256 digest) or a code commit (or prefix)."""
        if commit is None and dataset is None and digest is None:
            raise InvalidInput("impact: give a dataset or a commit", field="dataset")
        if commit is not None and len(commit.strip()) < 4:
            raise InvalidInput("commit: give at least 4 characters", field="commit")
        with self.db.read() as conn:
            if commit is not None:
                return queries.impact(conn, commit=commit.strip().lower())
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
        target = parse_stage(stage)
        who = resolve_actor(actor)
        at = _now()

        def work(conn: Connection) -> None:
            row = queries.version_row(conn, name, version)
            current = Stage(row.stage)
            check_transition(current, target, model=name, version=version)
            approvers = lifecycle.check_entry(conn, self.policy, row, name, target)
            payload: dict[str, Any] = {"from": current.value, "to": target.value, "reason": reason}
            if target == Stage.PRODUCTION:
                old = queries.production_row(conn, row.model_id)
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
                lifecycle.point_alias(conn, row.model_id, lifecycle.PRODUCTION_ALIAS, row, actor=who, at=at)
                payload["approved_by"] = approvers
                action = "version.promoted"
            else:
                lifecycle.move(conn, row, target, kind="transition", actor=who, reason=reason, at=at)
                if current == Stage.PRODUCTION:
                    lifecycle.point_alias(
                        conn, row.model_id, lifecycle.PRODUCTION_ALIAS, None, actor=who, at=at
                    )
                action = "version.transitioned"
            self._audit(conn, at, who, action, name, version, payload)

        self.db.transact(work)
        return self.get_version(name, version)

    def approve(
        self,
        name: str,
        version: int,
        *,
        reason: str | None = None,
        actor: str | None = None,
        stage: str | Stage = Stage.PRODUCTION,
    ) -> Approval:
        """Record an approve decision; refuses the registrant, a repeat decider, a non-approver."""
        return self._decide(name, version, "approve", reason, actor, parse_stage(stage))

    def reject(
        self,
        name: str,
        version: int,
        *,
        reason: str,
        actor: str | None = None,
        stage: str | Stage = Stage.PRODUCTION,
    ) -> Approval:
        """Record a reject decision and send a staged version back to development."""
        if not reason or not reason.strip():
            raise InvalidInput("reason: a rejection needs a reason", field="reason")
        return self._decide(name, version, "reject", reason, actor, parse_stage(stage))

    def _decide(
        self,
        name: str,
        version: int,
        decision: str,
        reason: str | None,
        actor: str | None,
        target: Stage,
    ) -> Approval:
        who = resolve_actor(actor)
        at = _now()

        def work(conn: Connection) -> Approval:
            row = queries.version_row(conn, name, version)
            lifecycle.check_decider(
                conn, self.policy, row, name, target, who, approving=decision == "approve"
            )
            conn.execute(
                approvals.insert().values(
                    version_id=row.id,
                    decision=decision,
                    actor=who,
                    reason=reason,
                    target_stage=target.value,
                    review_round=row.review_round,
                    at=at,
                )
            )
            payload: dict[str, Any] = {"target_stage": target.value, "reason": reason}
            if decision == "reject" and Stage(row.stage) != Stage.DEVELOPMENT:
                lifecycle.move(conn, row, Stage.DEVELOPMENT, kind="reject", actor=who, reason=reason, at=at)
                payload["moved_to"] = Stage.DEVELOPMENT.value
            action = "version.approved" if decision == "approve" else "version.rejected"
            self._audit(conn, at, who, action, name, version, payload)
            return Approval(
                decision=decision,
                actor=who,
                reason=reason,
                target_stage=target,
                at=at,
                review_round=row.review_round,
                current=decision == "approve",
            )

        return self.db.transact(work)

    def rollback(self, name: str, *, reason: str, actor: str | None = None) -> RollbackResult:
        """Demote the production version and restore the one before it, in one transaction.

        The demoted version is marked rolled back and is never a rollback target again. Refused,
        with nothing changed, when there is no production version or nothing to restore.
        """
        if not reason or not reason.strip():
            raise InvalidInput("reason: a rollback needs a reason", field="reason")
        who = resolve_actor(actor)
        at = _now()

        def work(conn: Connection) -> RollbackResult:
            model = queries.model_row(conn, name)
            current, target = lifecycle.plan_rollback(conn, model.id, name)
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
            lifecycle.point_alias(conn, model.id, lifecycle.PRODUCTION_ALIAS, target, actor=who, at=at)
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
                },
            )
            return RollbackResult(
                model=name, demoted=current.version, restored=target.version, reason=reason, actor=who, at=at
            )

        return self.db.transact(work)

    # --- aliases and evidence -----------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, *, actor: str | None = None) -> None:
        """Point ``name@alias`` at a version; ``production`` is managed by stages and refused."""
        self._alias(name, alias, version, actor)

    def remove_alias(self, name: str, alias: str, *, actor: str | None = None) -> None:
        """Remove an alias; refuses ``production`` and an alias that is not set."""
        self._alias(name, alias, None, actor)

    def _alias(self, name: str, alias: str, version: int | None, actor: str | None) -> None:
        check_name(alias, "alias")
        if alias == lifecycle.PRODUCTION_ALIAS:
            raise Refused(
                "alias production follows the production stage; use transition or rollback", model=name
            )
        who = resolve_actor(actor)
        at = _now()

        def work(conn: Connection) -> None:
            model = queries.model_row(conn, name)
            row = queries.version_row(conn, name, version) if version is not None else None
            old = lifecycle.point_alias(conn, model.id, alias, row, actor=who, at=at)
            if version is None and old is None:
                queries.resolve_alias(conn, name, alias)  # raises AliasNotFound
            action = "alias.set" if version is not None else "alias.removed"
            self._audit(
                conn, at, who, action, name, version, {"alias": alias, "version": version, "previous": old}
            )

        self.db.transact(work)

    def add_evidence(
        self,
        name: str,
        version: int,
        *,
        gate: str,
        passed: bool,
        value: float | None = None,
        threshold: float | None = None,
        details: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> Evidence:
        """Attach a gate result to a version (append-only; the latest per gate counts)."""
        if not gate or len(gate) > 128:
            raise InvalidInput(f"gate: {gate!r} must be 1 to 128 characters", field="gate")
        for label, number in (("value", value), ("threshold", threshold)):
            if number is not None and not (
                isinstance(number, int | float) and abs(float(number)) < float("inf")
            ):
                raise InvalidInput(f"{label}: {number!r} is not a finite number", field=label)
        try:
            clean = json.loads(audit.canonical(details or {}))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"details: not JSON-serializable: {exc}", field="details") from None
        who = resolve_actor(actor)
        at = _now()
        ev = Evidence(
            gate=gate, passed=passed, value=value, threshold=threshold, details=clean, actor=who, at=at
        )

        def work(conn: Connection) -> Evidence:
            row = queries.version_row(conn, name, version)
            conn.execute(evidence.insert().values(version_id=row.id, **ev.model_dump()))
            self._audit(
                conn,
                at,
                who,
                "evidence.added",
                name,
                version,
                {"gate": gate, "passed": passed, "value": value, "threshold": threshold},
            )
            return ev

        return self.db.transact(work)

    # --- audit ----------------------------------------------------------------------------

    def audit_log(self, model: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        """Audit events in chain order, optionally for one model, the last ``limit`` of them."""
        with self.db.read() as conn:
            events = [audit.to_event(r) for r in audit.iter_events(conn, model)]
        return events[-limit:] if limit else events

    def verify_audit(self, *, raise_on_error: bool = False) -> VerifyReport:
        """Recompute the hash chain; report (or raise on) the first bad seq."""
        with self.db.read() as conn:
            report = audit.verify(conn)
        if raise_on_error and not report.ok:
            raise AuditChainBroken(
                f"audit chain broken at seq {report.first_bad_seq}: {report.problem}",
                seq=report.first_bad_seq or 0,
            )
        return report

    def export_audit(self, path: str | Path) -> int:
        """Write the chain as JSONL (one canonical event per line); return the count."""
        out = Path(path)
        tmp = out.with_name(out.name + ".tmp")
        count = 0
        with self.db.read() as conn, open(tmp, "w", encoding="utf-8") as fh:
            for row in audit.iter_events(conn):
                fh.write(audit.to_event(row).model_dump_json() + "\n")
                count += 1
        tmp.replace(out)
        return count
