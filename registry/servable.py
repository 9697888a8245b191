"""Production is what can be served: the loading rules of ``govflow serve``, applied before promotion.

``govflow serve`` loads the production version with ``Registry.load_model``, which refuses a
pickle or joblib artifact unless the policy allows pickle loads, and it answers only a version
with an input schema (unless started with ``--no-schema``). The registry applies these rules
when a version is registered (a warning naming the fix) and when it would enter production (a
refusal), so the registry never says a version is live that the server would refuse to load:
the pickle rule always, the schema rule where the stage's policy rule sets ``input_schema``
(only the operator knows whether the model is served with ``--no-schema``, or by a manifest).

The server's own opt-in ``--allow-pickle`` stays the operator's; the registry judges what the
policy allows. A ``file`` artifact is never loaded by the registry at all: it is for deploy
targets that take the bytes themselves (a release manifest), and is not judged here.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from registry.errors import NotServable, ServingWarning
from registry.policy import Policy
from registry.serialization import PICKLE_FORMATS
from registry.stages import Stage

PICKLE_FIX = (
    "register a skops artifact (register_model saves one), or have an admin set allow_pickle = true "
    "(govflow policy set)"
)
SCHEMA_FIX = "register it with --input-example or --input-schema (register_model(..., input_example=X))"

WARNING_HEADER = "X-Govflow-Warning"
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Set by the registry server: warnings raised for its callers are collected, not logged.
_collector: ContextVar[list[ServingWarning] | None] = ContextVar("govflow_serving_warnings", default=None)


@dataclass(frozen=True, slots=True)
class Unservable:
    """One reason a version could not be served from a stage, and the fix."""

    reason: str  # "pickle" or "input_schema"
    problem: str
    fix: str


def serving_problems(
    artifact_format: str, input_schema: Sequence[Any] | None, policy: Policy, stage: Stage = Stage.PRODUCTION
) -> list[Unservable]:
    """Why a version with this artifact format and input schema could not enter ``stage``.

    Production refuses a pickle or joblib artifact unless the policy allows pickle loads; any
    stage whose rule sets ``input_schema`` refuses a version that records no input columns.
    """
    problems: list[Unservable] = []
    if stage == Stage.PRODUCTION and artifact_format in PICKLE_FORMATS and not policy.allow_pickle:
        problem = f"the {artifact_format} artifact needs pickle loads, which the policy forbids"
        problems.append(Unservable("pickle", problem, PICKLE_FIX))
    if policy.rule(stage).input_schema and not input_schema:
        problem = f"it records no input schema, which the policy requires for {stage.value}"
        problems.append(Unservable("input_schema", problem, SCHEMA_FIX))
    return problems


def describe(problems: Sequence[Unservable]) -> str:
    """The problems and their fixes as one clause: ``problem; fix; problem; fix``."""
    return "; ".join(f"{p.problem}; {p.fix}" for p in problems)


def check_servable(
    model: str,
    version: int,
    artifact_format: str,
    input_schema: Sequence[Any] | None,
    policy: Policy,
    stage: Stage = Stage.PRODUCTION,
) -> None:
    """Refuse (``NotServable``) a version that could not be served from ``stage`` under ``policy``."""
    problems = serving_problems(artifact_format, input_schema, policy, stage)
    if problems:
        raise NotServable(
            f"{model}/{version} cannot enter {stage.value}, as it could not be served: {describe(problems)}",
            model=model,
            version=version,
            reason=",".join(p.reason for p in problems),
        )


def warn_unservable(model: str, version: int, problems: Sequence[Unservable]) -> ServingWarning | None:
    """Warn (``ServingWarning``) that a just-registered version will be kept out of production.

    Under ``collected_warnings`` the warning is handed to the collector instead, so the registry
    server returns it to its caller rather than logging it. Returns the warning, or None.
    """
    if not problems:
        return None
    warning = ServingWarning(
        f"{model}/{version} is registered but could not be served from production, so promotion "
        f"will be refused: {describe(problems)}",
        model=model,
        version=version,
        reason=",".join(p.reason for p in problems),
    )
    emit(warning)
    return warning


def emit(warning: ServingWarning) -> None:
    """Warn, pointing at the caller's code; or hand the warning to ``collected_warnings``."""
    collector = _collector.get()
    if collector is not None:
        collector.append(warning)
    else:
        warnings.warn(warning, stacklevel=_caller_level())


@contextmanager
def collected_warnings() -> Iterator[list[ServingWarning]]:
    """Collect the serving warnings raised inside (in this context only) instead of emitting them."""
    found: list[ServingWarning] = []
    token = _collector.set(found)
    try:
        yield found
    finally:
        _collector.reset(token)


def warning_header(warning: ServingWarning) -> str:
    """The warning as an HTTP header value: percent-encoded JSON (detail, model, version, reason)."""
    doc = {
        "detail": warning.message,
        "model": warning.model,
        "version": warning.version,
        "reason": warning.reason,
    }
    return quote(json.dumps(doc, separators=(",", ":")), safe="")


def warning_from_header(value: str) -> ServingWarning | None:
    """The warning a ``warning_header`` value carries, or None for a value that is not one."""
    try:
        doc = json.loads(unquote(value))
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("detail"), str):
        return None
    model, version, reason = doc.get("model"), doc.get("version"), doc.get("reason")
    return ServingWarning(
        doc["detail"],
        model=model if isinstance(model, str) else None,
        version=version if isinstance(version, int) and not isinstance(version, bool) else None,
        reason=reason if isinstance(reason, str) else None,
    )


def _caller_level() -> int:
    """The ``stacklevel`` (for ``emit``) naming the first frame outside the registry package."""
    frame, level = sys._getframe(2), 2  # 0 is here, 1 is emit (stacklevel 1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_HERE):
        frame, level = frame.f_back, level + 1
    return level
