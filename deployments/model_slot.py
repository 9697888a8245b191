"""The slot holding the served model, and the hot swap that replaces it.

The served model is an immutable bundle (estimator, validator, metadata). A swap is one
reference assignment, so a request that has read the slot finishes on the bundle it read, and no
request ever sees a mix of two versions. A new version is loaded and verified off to the side;
if that fails, the old bundle stays and the slot reports ``degraded``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from deployments.logs import EVENTS, log_json
from deployments.payload import MAX_ROWS, InputValidator
from deployments.schemas import Degraded, Health, ModelInfo, ReloadResult
from registry import Registry
from registry.errors import DeployError, GovflowError, InvalidInput, NotFound

PRODUCTION = "production"


def _now() -> datetime:
    return datetime.now(UTC)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One loaded, verified version: never mutated, only replaced."""

    info: ModelInfo
    estimator: Any
    validator: InputValidator

    def predict(self, records: Any, *, max_rows: int = MAX_ROWS) -> list[Any]:
        """Validate ``records`` against this version's schema and predict.

        Refuses (``InvalidInput``) a payload the schema refuses, and input the model itself
        rejects with ``ValueError``/``TypeError`` (an unseen category, say).
        """
        frame = self.validator.to_frame(records, max_rows=max_rows)
        try:
            out = self.estimator.predict(frame)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"records: the model refused the input: {_one_line(exc)}", field="records"
            ) from exc
        return np.asarray(out).tolist()


def load_served(
    registry: Registry, name: str, version: int, *, allow_pickle: bool = False, actor: str | None = None
) -> ServedModel:
    """Load ``name/version`` through the safe loader and verify it can serve.

    Refuses what ``Registry.load_model`` refuses (digest mismatch, untrusted types, pickle
    without both opt-ins), an object without ``predict`` (``DeployError``), and a version
    without an input schema or whose schema is not the model's feature set (``InvalidInput``).
    """
    mv = registry.get_version(name, version)
    # By number, not alias: the metadata and the bytes are the same version even if the alias moves.
    estimator = registry.load_model(f"{name}/{version}", allow_pickle=allow_pickle, actor=actor)
    if not callable(getattr(estimator, "predict", None)):
        raise DeployError(
            f"{name}/{version}: a {type(estimator).__qualname__} has no predict(); cannot serve it",
            model=name,
            version=version,
            reason="no predict",
        )
    features = getattr(estimator, "feature_names_in_", None)
    validator = InputValidator(
        mv.input_schema, order=None if features is None else [str(f) for f in features]
    )
    info = ModelInfo(
        name=name,
        version=version,
        sha256=mv.artifact.sha256,
        stage=mv.stage,
        artifact_uri=mv.artifact.uri,
        artifact_format=mv.artifact.format,
        loaded_at=_now(),
        registered_by=mv.registered_by,
        registered_at=mv.registered_at,
        lineage=mv.lineage,
        input_schema=mv.input_schema,
    )
    return ServedModel(info=info, estimator=estimator, validator=validator)


class ModelSlot:
    """Holds the served version of ``name`` and follows ``name@production`` in the registry."""

    def __init__(
        self,
        registry: Registry,
        name: str,
        *,
        actor: str | None = None,
        allow_pickle: bool = False,
        retry_after: float = 2.0,
        retry_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Resolve and load the production version now.

        Refuses to start (the registry's error, e.g. ``AliasNotFound`` when nothing is in
        production, or a load refusal): a server with no model has nothing to degrade to.
        """
        self.registry = registry
        self.name = name
        self.actor = actor
        self.allow_pickle = allow_pickle
        self.retry_after = retry_after
        self.retry_max = retry_max
        self._clock = clock
        self._lock = threading.Lock()  # one check/load at a time; readers never take it
        ref = registry.resolve(f"{name}@{PRODUCTION}")
        self._current = load_served(registry, name, ref.version, allow_pickle=allow_pickle, actor=actor)
        self._checked_at: datetime | None = _now()
        self._degraded: Degraded | None = None
        self._failed_key: tuple[str, int | None, str | None] | None = None
        self._retry_at = 0.0
        log_json(EVENTS, event="loaded", model=name, version=ref.version, sha256=ref.artifact_sha256)

    @property
    def current(self) -> ServedModel:
        """The bundle to answer with; read it once per request."""
        return self._current

    def health(self) -> Health:
        """ok, or degraded with the reason; always names the version answering."""
        degraded = self._degraded
        return Health(
            status="degraded" if degraded else "ok",
            model=self.name,
            version=self._current.info.version,
            checked_at=self._checked_at,
            degraded=degraded,
        )

    def refresh(self, *, force: bool = False) -> ReloadResult:
        """Check the registry (one indexed query) and swap in a new production version if any.

        Artifact I/O happens only when the production version or digest differs from the one
        served. A target that failed to load is retried with exponential backoff, or at once
        when ``force`` (``POST /reload``). Never raises for a failed load: the old version stays.
        """
        with self._lock:
            before = self._current
            self._checked_at = _now()
            try:
                ref = self.registry.resolve(f"{self.name}@{PRODUCTION}")
            except NotFound as exc:
                self._fail("no production version", exc, None, None)
                return self._result(before)
            except Exception as exc:  # noqa: BLE001 - a registry outage must not stop serving; reported
                self._fail("registry unreachable", exc, None, None)
                return self._result(before)
            key = (ref.version, ref.artifact_sha256)
            if key == (before.info.version, before.info.sha256):
                self._recovered()
                return self._result(before)
            failed_before = self._failed_key == ("load failed", *key)
            if failed_before and not force and self._clock() < self._retry_at:
                return self._result(before)  # backing off: no artifact I/O for a known-bad target
            try:
                new = load_served(
                    self.registry, self.name, ref.version, allow_pickle=self.allow_pickle, actor=self.actor
                )
            except Exception as exc:  # noqa: BLE001 - any load failure keeps the old model; it is logged and audited
                self._fail("load failed", exc, ref.version, ref.artifact_sha256)
                return self._result(before)
            self._current = new  # the swap: requests holding `before` finish on it
            log_json(
                EVENTS, event="swapped", model=self.name, previous=before.info.version, version=ref.version
            )
            self._recovered()
            return self._result(before)

    # --- state ------------------------------------------------------------------------------

    def _result(self, before: ServedModel) -> ReloadResult:
        health = self.health()
        return ReloadResult(
            changed=self._current is not before,
            previous_version=before.info.version,
            version=health.version,
            status=health.status,
            degraded=health.degraded,
        )

    def _fail(self, reason: str, exc: BaseException, version: int | None, sha256: str | None) -> None:
        key = (reason, version, sha256)
        error = _one_line(exc)
        prior = self._degraded if self._failed_key == key else None
        attempts = prior.attempts + 1 if prior else 1
        degraded = Degraded(
            reason=reason,
            error=error,
            target_version=version,
            target_sha256=sha256,
            since=prior.since if prior else _now(),
            attempts=attempts,
        )
        serving = self._current.info.version
        log_json(
            EVENTS,
            logging.WARNING,
            event="degraded",
            model=self.name,
            serving=serving,
            reason=reason,
            target=version,
            error=error,
            attempts=attempts,
        )
        if prior is None:  # one audit event (and traceback) per failing target, not one per poll
            if not isinstance(exc, GovflowError):
                EVENTS.warning("unexpected %s while checking %s", type(exc).__name__, self.name, exc_info=exc)
            payload = {
                "reason": reason,
                "error": error,
                "serving_version": serving,
                "target_version": version,
                "target_sha256": sha256,
            }
            self._audit("serving.degraded", version if version is not None else serving, payload)
        # Published after the audit write: whoever sees "degraded" in /health finds the event.
        self._degraded = degraded
        self._failed_key = key
        self._retry_at = self._clock() + min(self.retry_after * 2 ** (attempts - 1), self.retry_max)

    def _recovered(self) -> None:
        was = self._degraded
        if was is None:
            return
        version = self._current.info.version
        log_json(EVENTS, event="recovered", model=self.name, version=version, reason=was.reason)
        self._audit("serving.recovered", version, {"after": was.reason, "since": was.since.isoformat()})
        self._degraded = None
        self._failed_key = None

    def _audit(self, action: str, version: int, payload: dict[str, Any]) -> None:
        try:
            self.registry.record(action, model=self.name, version=version, payload=payload, actor=self.actor)
        except GovflowError as exc:  # the registry may be what failed; the log line still tells
            log_json(EVENTS, logging.ERROR, event="audit_failed", action=action, error=_one_line(exc))
