"""``RemoteRegistry``: the registry API over HTTP, with the embedded registry's signatures.

Refusals come back as the same exception classes; entities are the same pydantic models.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from registry import entities, registration, servable
from registry.artifacts.base import ArtifactStore
from registry.entities import (
    Approval,
    Evidence,
    ModelSummary,
    ModelVersion,
    Page,
    ProductionAt,
    RollbackResult,
    StageChange,
    VersionRef,
    VersionSpec,
)
from registry.errors import InvalidInput, PolicyError, Refused, first_invalid
from registry.filters import check_limit, parse_filters
from registry.model_io import ModelIO
from registry.policy import SERVER_DEFAULTS, Policy
from registry.policy_record import digest
from registry.remote.store import RemoteArtifactStore
from registry.remote.trail import Trail
from registry.remote.transport import Transport, many, read_token
from registry.remote.users import Users
from registry.stages import Stage
from registry.validate import check_impact, check_name, check_version


def _stage(stage: Any) -> Any:
    return stage.value if isinstance(stage, Stage) else stage


def _filters(stage: Any, alias: Any, tags: Any, metrics: Any) -> dict[str, Any]:
    """Listing filters as query parameters, refused here when bad (the server checks them again)."""
    return parse_filters(stage, alias, tags, metrics).as_query()


def _v(name: Any, version: Any) -> str:
    """The URL of a version; name and number are checked here, as the embedded registry does."""
    return f"/api/v1/models/{check_name(name)}/versions/{check_version(version)}"


class RemoteRegistry(ModelIO, Trail, Users):
    """The registry served by ``govflow server``; ``Registry("https://…")`` returns one.

    The token comes from ``token``, GOVFLOW_TOKEN or GOVFLOW_TOKEN_FILE. A ``policy`` (or
    GOVFLOW_POLICY) that differs from the server's is refused. ``on_behalf=True`` (admin tools,
    tests) sends a given ``actor`` as the user the admin acts for, instead of as a claim.
    """

    def __init__(
        self,
        url: str,
        artifact_root: str | None = None,
        policy: Policy | str | Path | None = None,
        *,
        token: str | None = None,
        create: bool = True,
        default_policy: Policy | None = None,
        on_behalf: bool = False,
    ) -> None:
        if artifact_root is not None:
            raise InvalidInput(
                "artifact_root: the server holds the artifact store; client mode takes none",
                field="artifact_root",
            )
        self.url = url.rstrip("/")
        self.on_behalf = on_behalf
        self.transport = Transport(self.url, read_token(token))
        self._artifacts = RemoteArtifactStore(self.transport)
        self.artifact_root = self._artifacts.root  # where blobs are reached: the server's blob API
        wanted = policy if policy is not None else os.environ.get("GOVFLOW_POLICY") or None
        if wanted is not None:
            self._check_policy(wanted)

    def _check_policy(self, wanted: Policy | str | Path) -> None:
        # The server fills keys a file leaves out with its defaults (a registry server's, or the
        # built-in ones behind an embedded-mode server): a file matches when either reading does.
        if isinstance(wanted, Policy):
            readings = [wanted]
        else:
            readings = [Policy.load(wanted, defaults=SERVER_DEFAULTS), Policy.load(wanted)]
        theirs, _ = digest(self.policy)
        mine = digest(readings[0])[0]
        if all(digest(p)[0] != theirs for p in readings):
            raise PolicyError(
                f"policy: the given policy ({mine[:12]}) differs from the registry's policy ({theirs[:12]}); "
                "use `govflow policy set`",
                field="policy",
            )

    # --- plumbing ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> bytes:
        """One call; an ``actor`` (in ``body`` or ``kw``) is sent as a claim the server checks."""
        return self._request(method, path, body, **kw).content

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        """``_call``, answering the whole response (for its headers)."""
        holder = body if body is not None and "actor" in body else kw if "actor" in kw else None
        on_behalf = None
        if holder is not None:
            actor = holder.pop("actor")
            if self.on_behalf and isinstance(actor, str):
                on_behalf, actor = actor, None
            elif actor is None and not self.on_behalf:
                actor = os.environ.get("GOVFLOW_ACTOR") or None  # a claim: refused unless it is us
            if body is not None:
                body["actor"] = actor
            elif actor is not None:
                kw["params"] = {**kw.get("params", {}), "actor": actor}
        return self.transport.call(method, path, json=body, on_behalf_of=on_behalf, **kw)

    @property
    def artifacts(self) -> ArtifactStore:
        """The server's artifact store, over HTTP; downloads are verified here."""
        return self._artifacts

    def close(self) -> None:
        """Close the HTTP connections."""
        self.transport.close()

    def upgrade(self) -> tuple[str | None, str | None]:
        raise Refused("schema upgrades run on the server: govflow db upgrade, with the database URL")

    # --- registration -----------------------------------------------------------------------

    def register(
        self,
        name: str,
        artifact: str | Path,
        *,
        actor: str | None = None,
        artifact_format: str = "file",
        **fields: Any,
    ) -> ModelVersion:
        """Upload the artifact (streamed, digest-checked by the server), then register it."""
        registration.check_spec(name, artifact_format, fields)  # refused here, before any byte is sent
        blob = self.artifacts.put(Path(artifact))
        return self.register_stored(name, blob.sha256, actor=actor, artifact_format=artifact_format, **fields)

    def register_stored(
        self,
        name: str,
        sha256: str,
        *,
        actor: str | None = None,
        artifact_format: str = "file",
        **fields: Any,
    ) -> ModelVersion:
        """Register a blob already stored on the server; the server's warnings are raised here again."""
        try:
            spec = VersionSpec(**fields)
        except ValidationError as exc:
            raise first_invalid(exc, "", "version") from None
        body = {
            "sha256": sha256,
            "artifact_format": artifact_format,
            "actor": actor,
            "fields": spec.model_dump(mode="json", exclude_unset=True),
        }
        response = self._request("POST", f"/api/v1/models/{check_name(name)}/versions", body)
        mv = ModelVersion.model_validate_json(response.content)
        for value in response.headers.get_list(servable.WARNING_HEADER):
            warning = servable.warning_from_header(value)
            if warning is not None:
                servable.emit(warning)
        return mv

    # --- reads ------------------------------------------------------------------------------

    def get(self, ref: str) -> ModelVersion:
        return ModelVersion.model_validate_json(self._call("GET", "/api/v1/refs", params={"ref": ref}))

    def get_version(self, name: str, version: int) -> ModelVersion:
        return ModelVersion.model_validate_json(self._call("GET", _v(name, version)))

    def resolve(self, ref: str) -> VersionRef:
        return VersionRef.model_validate_json(self._call("GET", "/api/v1/resolve", params={"ref": ref}))

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
        # Checked here as the embedded registry does: a string limit is refused, not sent as "5".
        params = {"limit": check_limit(limit), "page_token": page_token, **_filters(stage, alias, tags, metrics)}
        if before is not None:
            params["before"] = check_version(before, "before")
        if not isinstance(with_decisions, bool):
            raise InvalidInput(f"with_decisions: {with_decisions!r} must be true or false", field="with_decisions")
        if with_decisions:
            params["with_decisions"] = "true"
        page = entities.VersionPage.model_validate_json(
            self._call("GET", f"/api/v1/models/{check_name(name)}/versions", params=params)
        )
        return Page(page.versions, next_page_token=page.next_page_token)

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
        params = {"limit": check_limit(limit), "page_token": page_token, **_filters(stage, alias, tags, metrics)}
        page = entities.ModelPage.model_validate_json(self._call("GET", "/api/v1/models", params=params))
        return Page(page.models, next_page_token=page.next_page_token)

    def history(self, name: str) -> list[StageChange]:
        return many(StageChange, self._call("GET", f"/api/v1/models/{check_name(name)}/history"))

    def production_at(self, name: str, at: datetime) -> ProductionAt:
        check_name(name)
        if not isinstance(at, datetime):
            raise InvalidInput(f"time: {at!r} is not a datetime", field="time")
        path = f"/api/v1/models/{name}/production-at"
        return ProductionAt.model_validate_json(self._call("GET", path, params={"at": at.isoformat()}))

    def impact(
        self, *, dataset: str | None = None, digest: str | None = None, commit: str | None = None
    ) -> list[dict[str, Any]]:
        dataset, digest, commit = check_impact(dataset, digest, commit)  # refused here, as embedded
        params = {"dataset": dataset, "digest": digest, "commit": commit}
        return TypeAdapter(list[dict[str, Any]]).validate_json(
            self._call("GET", "/api/v1/impact", params=params)
        )

    # --- lifecycle --------------------------------------------------------------------------

    def transition(
        self,
        name: str,
        version: int,
        stage: str | Stage,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> ModelVersion:
        body = {"stage": _stage(stage), "reason": reason, "actor": actor}
        return ModelVersion.model_validate_json(self._call("POST", _v(name, version) + "/transition", body))

    def approve(
        self,
        name: str,
        version: int,
        *,
        reason: str | None = None,
        actor: str | None = None,
        stage: str | Stage = Stage.PRODUCTION,
        claimed_by: str | None = None,
        code: str | None = None,
    ) -> Approval:
        body = {
            "reason": reason,
            "actor": actor,
            "stage": _stage(stage),
            "claimed_by": claimed_by,
            "code": code,
        }
        return Approval.model_validate_json(self._call("POST", _v(name, version) + "/approve", body))

    def reject(
        self,
        name: str,
        version: int,
        *,
        reason: str,
        actor: str | None = None,
        stage: str | Stage = Stage.PRODUCTION,
        claimed_by: str | None = None,
    ) -> Approval:
        body = {"reason": reason, "actor": actor, "stage": _stage(stage), "claimed_by": claimed_by}
        return Approval.model_validate_json(self._call("POST", _v(name, version) + "/reject", body))

    def approval_code(
        self,
        name: str,
        version: int,
        *,
        actor: str | None = None,
        valid_for: int = 600,
        stage: str | Stage = Stage.PRODUCTION,
    ) -> str:
        body = {"actor": actor, "valid_for": valid_for, "stage": _stage(stage)}
        return TypeAdapter(dict[str, str]).validate_json(
            self._call("POST", _v(name, version) + "/approval-code", body)
        )["code"]

    def waive(self, name: str, version: int, gate: str, *, reason: str, actor: str | None = None) -> Any:
        body = {"gate": gate, "reason": reason, "actor": actor}
        return entities.Waiver.model_validate_json(self._call("POST", _v(name, version) + "/waivers", body))

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
        body = {"gate": gate, "passed": passed, "value": value, "threshold": threshold, "details": details}
        body["actor"] = actor
        return Evidence.model_validate_json(self._call("POST", _v(name, version) + "/evidence", body))

    def rollback(
        self, name: str, *, reason: str, actor: str | None = None, expected_version: int | None = None
    ) -> RollbackResult:
        body = {"reason": reason, "actor": actor, "expected_version": expected_version}
        path = f"/api/v1/models/{check_name(name)}/rollback"
        return RollbackResult.model_validate_json(self._call("POST", path, body))

    def set_alias(self, name: str, alias: str, version: int, *, actor: str | None = None) -> None:
        check_name(alias, "alias")
        check_version(version)
        self._call(
            "PUT", f"/api/v1/models/{check_name(name)}/aliases/{alias}", {"version": version, "actor": actor}
        )

    def remove_alias(self, name: str, alias: str, *, actor: str | None = None) -> None:
        check_name(alias, "alias")
        self._call("DELETE", f"/api/v1/models/{check_name(name)}/aliases/{alias}", actor=actor)
