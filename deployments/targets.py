"""Deploy targets: how a production version reaches where it runs, chosen in the pipeline config.

- ``serving``: tell a running ``govflow serve`` to reload (with the reload token from
  GOVFLOW_SERVE_TOKEN or GOVFLOW_SERVE_TOKEN_FILE; without one, the server's own poll does it),
  then wait until it answers with the expected version; not converging within the timeout is a
  failed deploy.
- ``manifest``: write a release manifest (model, version, digest, artifact URI, approvers, time)
  to a local file or an S3 key, for external CD (Argo, Flux, Kubernetes jobs) to pick up.
- ``none``: do nothing (a pipeline that only registers and promotes).

Targets deploy only the version the registry has in production: deploy automation never picks
an artifact itself. Each deploy is audited (``model.deployed``, or ``model.deploy_failed``).
Prefect events are the flows' job; nothing here imports Prefect.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from deployments.reload_token import client_token
from registry import Registry
from registry.config import env
from registry.errors import DeployError, GovflowError, InvalidInput, first_invalid, map_exceptions
from registry.stages import Stage

MANIFEST_SCHEMA = "govflow.release/v1"


class DeployResult(BaseModel):
    """What a deploy did, for the flow to log, emit and assert on."""

    model_config = ConfigDict(frozen=True)

    target: str = Field(description="Target kind: serving, manifest or none.")
    model: str = Field(description="Model name.")
    version: int = Field(description="Version deployed.")
    sha256: str = Field(description="Artifact digest of that version.")
    converged: bool = Field(description="True when the target is confirmed to run this version.")
    location: str | None = Field(description="Server URL, manifest path or s3:// key; None for none.")
    detail: dict[str, Any] = Field(default_factory=dict, description="Target-specific facts.")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServingTargetSpec(_Spec):
    """A running ``govflow serve`` to reload and watch."""

    kind: Literal["serving"] = Field(description="Selects the serving target.")
    url: str = Field(default="http://127.0.0.1:8080", description="Base URL of the serving app.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for the server to converge.")


class ManifestTargetSpec(_Spec):
    """A release manifest written for external CD."""

    kind: Literal["manifest"] = Field(description="Selects the manifest target.")
    path: str = Field(min_length=1, description="Local file path, or s3://bucket/key.")


class NoTargetSpec(_Spec):
    """No deployment."""

    kind: Literal["none"] = Field(description="Selects no deployment.")


TargetSpec = Annotated[ServingTargetSpec | ManifestTargetSpec | NoTargetSpec, Field(discriminator="kind")]
_SPEC = TypeAdapter(TargetSpec)


class DeployTarget(Protocol):
    """Something that can make a registry version run somewhere."""

    def deploy(
        self, registry: Registry, model: str, version: int, *, actor: str | None = None
    ) -> DeployResult:
        """Deploy ``model/version``; raise ``DeployError`` when it did not happen."""
        ...


def make_target(spec: TargetSpec | dict[str, Any]) -> DeployTarget:
    """The target for ``spec`` (a spec model or its dict); refuses an unknown kind or bad field."""
    if isinstance(spec, dict):
        try:
            spec = _SPEC.validate_python(spec)
        except ValidationError as exc:
            raise first_invalid(exc, "deploy target", "kind") from None
    if isinstance(spec, ServingTargetSpec):
        return ServingTarget(spec)
    if isinstance(spec, ManifestTargetSpec):
        return ManifestTarget(spec)
    if isinstance(spec, NoTargetSpec):
        return NoTarget()
    raise InvalidInput(f"deploy target: {spec!r} is not a target spec", field="deploy")


# --- shared -----------------------------------------------------------------------------------


def _production_sha(registry: Registry, model: str, version: int) -> str:
    """The version's digest; refuses (``DeployError``) a version that is not in production."""
    ref = registry.resolve(f"{model}/{version}")
    if ref.stage != Stage.PRODUCTION:
        raise DeployError(
            f"{model}/{version} is {ref.stage.value}, not production; "
            "only the production version is deployed",
            model=model,
            version=version,
            reason="not production",
        )
    return ref.artifact_sha256


def _deployed(registry: Registry, result: DeployResult, actor: str | None) -> DeployResult:
    payload = {"location": result.location, "sha256": result.sha256, **result.detail}
    registry.record_deployment(
        result.model, result.version, target=result.target, ok=True, payload=payload, actor=actor
    )
    return result


def _failed(
    registry: Registry,
    target: str,
    model: str,
    version: int,
    location: str,
    exc: GovflowError,
    actor: str | None,
) -> None:
    payload = {"location": location, "error": str(exc)}
    try:
        registry.record_deployment(model, version, target=target, ok=False, payload=payload, actor=actor)
    except GovflowError:
        pass  # the DeployError raised next says what failed; losing this record must not hide it


# --- serving ----------------------------------------------------------------------------------


class ServingTarget:
    """Reload a running serving app and wait until ``/model`` reports the expected version."""

    def __init__(self, spec: ServingTargetSpec) -> None:
        self.spec = spec
        self.url = spec.url.rstrip("/")

    def deploy(
        self, registry: Registry, model: str, version: int, *, actor: str | None = None
    ) -> DeployResult:
        """Reload, then poll ``GET /model`` until it serves ``version`` with the recorded digest.

        The reload is sent with the token from GOVFLOW_SERVE_TOKEN (or GOVFLOW_SERVE_TOKEN_FILE);
        with none set it is skipped and the server's own poll must pick the version up.
        Refuses (``DeployError``, audited as ``model.deploy_failed``): a version not in
        production, a server serving another model, a server that reports the load of this
        version failed or refuses the token, and no convergence within ``spec.timeout``
        (unreachable server included). A bad token setting is refused (``InvalidInput``).
        """
        sha = _production_sha(registry, model, version)
        token = client_token()
        started = time.monotonic()
        try:
            observed = self._converge(model, version, sha, started + self.spec.timeout, token)
        except DeployError as exc:
            _failed(registry, "serving", model, version, self.url, exc, actor)
            raise
        elapsed = round(time.monotonic() - started, 3)
        result = DeployResult(
            target="serving",
            model=model,
            version=version,
            sha256=sha,
            converged=True,
            location=self.url,
            detail={
                "seconds": elapsed,
                "loaded_at": observed.get("loaded_at"),
                "reload": "sent" if token else "skipped: no reload token, the server's poll",
            },
        )
        return _deployed(registry, result, actor)

    def _converge(
        self, model: str, version: int, sha: str, deadline: float, token: str | None
    ) -> dict[str, Any]:
        last = "no answer yet"
        reloaded = token is None  # no token: nothing to send, the server's poll does the reload
        pause = 0.05
        with httpx.Client(timeout=min(self.spec.timeout, 10.0)) as client:
            while True:
                try:
                    if not reloaded:
                        self._reload(client, model, version, token)
                        reloaded = True
                    info = client.get(f"{self.url}/model").raise_for_status().json()
                    if info.get("name") != model:
                        raise DeployError(
                            f"{self.url} serves model {info.get('name')!r}, not {model!r}",
                            model=model,
                            version=version,
                            reason="wrong model",
                        )
                    if info.get("version") == version and info.get("sha256") == sha:
                        return info
                    last = f"serving version {info.get('version')}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() + pause > deadline:
                    raise DeployError(
                        f"{self.url} did not converge to {model}/{version} "
                        f"within {self.spec.timeout}s ({last})",
                        model=model,
                        version=version,
                        reason="timeout",
                    )
                time.sleep(pause)  # a deadline-bounded wait for a remote server, not a test
                pause = min(pause * 2, 1.0)

    def _reload(self, client: httpx.Client, model: str, version: int, token: str | None) -> None:
        response = client.post(f"{self.url}/reload", headers={"authorization": f"Bearer {token}"})
        if response.status_code in (401, 403):  # retrying cannot help: the token setting is wrong
            try:
                body = response.json()
            except ValueError:
                body = None
            why = body.get("detail") if isinstance(body, dict) else response.text[:200]
            raise DeployError(
                f"{self.url} refused the reload ({response.status_code}): {why}",
                model=model,
                version=version,
                reason="reload refused",
            )
        answer = response.raise_for_status().json()
        degraded = answer.get("degraded") or {}
        if degraded.get("target_version") == version and degraded.get("reason") == "load failed":
            raise DeployError(
                f"{self.url} could not load {model}/{version}: {degraded.get('error')}",
                model=model,
                version=version,
                reason="load failed",
            )


# --- manifest ---------------------------------------------------------------------------------


def approvers(registry: Registry, model: str, version: int) -> list[str]:
    """Who approved the version's current production entry (kept across a rollback)."""
    entry = registry.production_at(model, datetime.now(UTC))
    if entry.version == version:
        return list(entry.approved_by)
    mv = registry.get_version(model, version)  # not in production (any more): its counting approvals
    return [
        a.actor
        for a in mv.approvals
        if a.current and a.decision == "approve" and a.target_stage == Stage.PRODUCTION
    ]


def release_manifest(
    registry: Registry, model: str, version: int, *, actor: str | None = None
) -> dict[str, Any]:
    """The manifest JSON object for ``model/version`` (refuses a version not in production)."""
    _production_sha(registry, model, version)
    mv = registry.get_version(model, version)
    return {
        "schema": MANIFEST_SCHEMA,
        "model": model,
        "version": version,
        "sha256": mv.artifact.sha256,
        "artifact_uri": mv.artifact.uri,
        "artifact_format": mv.artifact.format,
        "size": mv.artifact.size,
        "stage": mv.stage.value,
        "approved_by": approvers(registry, model, version),
        "registered_by": mv.registered_by,
        "deployed_by": actor,
        "time": datetime.now(UTC).isoformat(),
    }


class ManifestTarget:
    """Write the release manifest atomically to a local file or an S3 key."""

    def __init__(self, spec: ManifestTargetSpec) -> None:
        self.spec = spec

    def deploy(
        self, registry: Registry, model: str, version: int, *, actor: str | None = None
    ) -> DeployResult:
        """Write the manifest; readers see the old file or the new one, never a partial one.

        Refuses (``DeployError``): a version not in production, an unwritable path, an S3
        failure (bucket missing, denied, endpoint down).
        """
        who = actor or registry.whoami()
        manifest = release_manifest(registry, model, version, actor=who)
        data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        try:
            if self.spec.path.startswith("s3://"):
                _put_s3(self.spec.path, data)
            else:
                _write_atomic(Path(self.spec.path), data)
        except DeployError as exc:
            _failed(registry, "manifest", model, version, self.spec.path, exc, who)
            raise
        result = DeployResult(
            target="manifest",
            model=model,
            version=version,
            sha256=manifest["sha256"],
            converged=True,  # written is all this target can confirm; the CD system takes over
            location=self.spec.path,
            detail={"approved_by": manifest["approved_by"], "bytes": len(data)},
        )
        return _deployed(registry, result, who)


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())  # the rename must not publish a file whose bytes are not on disk
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the manifest from a CD agent's user
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise DeployError(f"manifest {path}: cannot write: {exc.strerror or exc}", reason="write") from exc


def _put_s3(uri: str, data: bytes) -> None:
    """PUT the manifest (S3 replaces an object atomically); endpoint from GOVFLOW_S3_ENDPOINT_URL."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    if len(bucket) < 3 or not key or key.endswith("/"):
        raise InvalidInput(f"manifest path: {uri!r} is not s3://bucket/key", field="deploy.path")
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint = env("GOVFLOW_S3_ENDPOINT_URL")

    def failed(exc: BaseException) -> GovflowError:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DeployError(f"manifest {uri}: cannot write: {detail}", reason="s3")

    with map_exceptions({ClientError: failed, BotoCoreError: failed, OSError: failed}):
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path" if endpoint else "auto"},
            ),
        )
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json")


# --- none -------------------------------------------------------------------------------------


class NoTarget:
    """Deploys nothing; the result says so and nothing is audited (nothing was deployed)."""

    def deploy(
        self, registry: Registry, model: str, version: int, *, actor: str | None = None
    ) -> DeployResult:
        """Return a result with ``converged=True`` and no location; refuses a non-production version."""
        sha = _production_sha(registry, model, version)
        return DeployResult(
            target="none",
            model=model,
            version=version,
            sha256=sha,
            converged=True,
            location=None,
            detail={"skipped": True},
        )
