"""reconcile: settle versions whose wait for approval ended without a decision, and wake waiting runs.

A suspended retrain has no process: when it times out, is cancelled or crashes, nothing of it
runs to record the outcome. Reconcile (scheduled, triggered by a retrain ending Failed, Crashed
or Cancelled, or ``govflow reconcile``) does, from the registry and the Prefect API:

- the waiting run ended, or its deadline passed: the version is settled (promoted when the
  registry holds the approvals the policy needs, else rejected, audited) and a timed-out run's
  final state is renamed ``TimedOut`` (or ``Promoted``);
- the run still waits but the registry decided meanwhile (an approval given with no reachable
  Prefect API, a reject through the registry server): the run is resumed so it finishes itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow
from pydantic import BaseModel, Field

from deployments.targets import make_target
from flows import events
from flows.approval import paused_runs, run_version
from flows.config import PipelineConfig
from flows.outcomes import finish, refused
from flows.steps import open_registry
from registry import waiting
from registry.entities import Decision, ModelVersion
from registry.errors import GovflowError
from registry.registry import Registry
from registry.stages import Stage

log = logging.getLogger(__name__)


class Action(BaseModel):
    """What reconcile did about one version."""

    model: str = Field(description="Model name.")
    version: int = Field(description="Version number.")
    action: str = Field(description="promoted, rejected, resumed or waiting.")
    run_id: str | None = Field(default=None, description="The waiting run, when known.")
    reason: str = Field(description="Why, in one line.")


def _prefect_available() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _emit(what: str, model: str, version: int, actor: str, **payload: Any) -> None:
    """Emit an event when a Prefect API is there to receive it (the CLI may run without one)."""
    if _prefect_available():
        events.emit(what, model, version, actor, **payload)


def _read_run(run_id: str | None) -> Any | None:
    """The flow run from the Prefect API; None when unknown or no API is configured."""
    if not run_id or not _prefect_available():
        return None
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(UUID(run_id))
    except (ObjectNotFound, ValueError):
        return None


def _name_run(run: Any, name: str, message: str) -> None:
    """Give an ended run the named final state its outcome deserves (it cannot do so itself)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Completed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Completed(name=name, message=message), force=True)


def _deploy(reg: Registry, model: str, version: int, config: PipelineConfig | None, run: Any) -> None:
    """Deploy a version reconcile promoted, through the config given or the waiting run's own."""
    if config is None and run is not None:
        path = (run.parameters or {}).get("config_path")
        if path and Path(path).is_file():
            config = PipelineConfig.load(path)
    if config is None or config.model_name != model:
        log.warning(
            "%s/%s promoted; no pipeline config to deploy it: run `govflow deploy %s`", model, version, model
        )
        return
    done = make_target(config.deploy).deploy(reg, model, version)
    _emit(
        "deployed",
        model,
        version,
        reg.whoami(),
        target=done.target,
        location=done.location,
        sha256=done.sha256,
    )


def _fresh_approval(v: ModelVersion, since: Any) -> str | None:
    """An approver whose decision arrived after the run last asked, if any."""
    for a in reversed(v.approvals):
        if a.current and a.decision == Decision.APPROVE and (since is None or a.at > since):
            return a.actor
    return None


def _settle(
    reg: Registry,
    v: ModelVersion,
    wait: waiting.Waiting | None,
    run: Any,
    why: str,
    config: PipelineConfig | None,
) -> Action:
    settled = waiting.settle(reg, v.model, v.version, reason=why)
    run_id = str(run.id) if run is not None else (wait.run_id if wait else None)
    if settled.outcome == "promoted":
        _emit("promoted", v.model, v.version, reg.whoami(), to_version=v.version, reason=settled.reason)
        _deploy(reg, v.model, v.version, config, run)
    elif settled.outcome == "rejected":
        _emit("rejected", v.model, v.version, reg.whoami(), reason=settled.reason)
    if run is not None and settled.outcome != "untouched" and not run.state.is_cancelled():
        _name_run(run, "Promoted" if settled.outcome == "promoted" else "TimedOut", settled.reason)
    return Action(
        model=v.model, version=v.version, action=settled.outcome, run_id=run_id, reason=settled.reason
    )


def reconcile_waiting(
    reg: Registry, model: str | None = None, config: PipelineConfig | None = None
) -> list[Action]:
    """Settle or wake every version waiting for approval (of ``model``, or all)."""
    actions: list[Action] = []
    # waiting() lists each staged version with its decisions read: no second read per version.
    for v, wait in waiting.waiting(reg, model):
        run = _read_run(wait.run_id if wait else None)
        state = run.state if run is not None else None
        if state is not None and state.is_final():
            if "never resumed" in (state.message or ""):
                why = "approval timed out: the waiting run timed out"
            else:
                why = f"the waiting run ended {state.name}"
            actions.append(_settle(reg, v, wait, run, why, config))
        elif wait is not None and wait.expired():
            actions.append(_settle(reg, v, wait, run, "approval timed out: the deadline passed", config))
        elif state is not None and state.is_paused():
            approver = _fresh_approval(v, state.timestamp)
            if approver is not None:
                _resume(run, approve=True, approver=approver, reason="approved in the registry")
                action, reason = "resumed", f"approved by {approver} in the registry"
            else:
                action = "waiting"
                reason = f"waits until {wait.deadline.isoformat(timespec='seconds') if wait else '?'}"
            actions.append(
                Action(model=v.model, version=v.version, action=action, run_id=str(run.id), reason=reason)
            )
    actions.extend(_wake_decided(reg, model))
    return actions


def _wake_decided(reg: Registry, model: str | None) -> list[Action]:
    """Resume runs still waiting on a version the registry already moved out of staging."""
    if not _prefect_available():
        return []
    out = []
    for name in [model] if model else [m.name for m in reg.models()]:
        for run in paused_runs(name):
            version = run_version(run)
            if version is None or reg.get_version(name, version).stage == Stage.STAGING:
                continue
            _resume(run, approve=False, approver="", reason="decided in the registry")
            out.append(
                Action(
                    model=name,
                    version=version,
                    action="resumed",
                    run_id=str(run.id),
                    reason="decided in the registry while the run waited",
                )
            )
    return out


def _resume(run: Any, *, approve: bool, approver: str, reason: str) -> None:
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(
        run.id, run_input={"approve": approve, "approver": approver, "reason": reason, "code": ""}
    )


@flow(name="reconcile", log_prints=True)
def reconcile(model_name: str | None = None, config_path: str | None = None) -> Any:
    """Settle versions whose approval wait ended without a decision; wake runs the registry decided."""
    try:
        config = PipelineConfig.load(config_path) if config_path else None
        reg = open_registry(config) if config else Registry()
        try:
            actions = reconcile_waiting(reg, model_name or None, config)
        finally:
            reg.close()
    except GovflowError as exc:
        return refused(exc)
    for a in actions:
        print(f"{a.model}/{a.version}: {a.action} ({a.reason})")
    return finish(
        {"outcome": "reconciled", "actions": [a.model_dump() for a in actions]}, f"{len(actions)} version(s)"
    )
