"""The human approval step: a paused flow run with a typed form, and resuming it from the CLI.

The form's defaults are the safe answer: resuming it untouched rejects. A timeout rejects too.
The registry decides who may approve; the flow only records what it was told.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import httpx
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from registry.entities import Decision, ModelVersion
from registry.registry import Registry

log = logging.getLogger(__name__)
MODEL_TAG = "govflow-model:"
VERSION_TAG = "govflow-version:"


class ApprovalInput(RunInput):
    """The approval form shown in the Prefect UI."""

    approve: bool = Field(
        default=False, title="Approve", description="Switch on to approve. Left off, the version is rejected."
    )
    approver: str = Field(
        default="", title="Approver", description="Your identity, as it will be recorded in the registry."
    )
    reason: str = Field(default="", title="Reason", description="Why you approve or reject.")


def _tag_run(model: str, version: int) -> None:
    """Tag the current run so ``govflow approve`` can find the pause for this version."""
    run_id = flow_run.get_id()
    if not run_id:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        tags = [t for t in run.tags if not t.startswith((MODEL_TAG, VERSION_TAG))]
        client.update_flow_run(UUID(run_id), tags=[*tags, f"{MODEL_TAG}{model}", f"{VERSION_TAG}{version}"])


def wait_for_decision(
    version: ModelVersion, description: str, *, timeout: int, poll: int
) -> ApprovalInput | None:
    """Pause the current flow run until the form is submitted; ``None`` when it timed out."""
    _tag_run(version.model, version.version)
    form = ApprovalInput.with_initial_data(description=description, approve=False, approver="", reason="")
    try:
        return pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=poll)
    except FlowPauseTimeout:
        return None


def already_decided(reg: Registry, version: ModelVersion, actor: str, decision: Decision) -> bool:
    """Whether ``actor`` already recorded ``decision`` on this version in its current review."""
    current = reg.get_version(version.model, version.version)
    return any(a.current and a.actor == actor and a.decision == decision for a in current.approvals)


def paused_runs(model: str, version: int | None = None) -> list[Any]:
    """Flow runs paused for approval of ``model`` (and ``version``), newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    tags = [f"{MODEL_TAG}{model}"] + ([f"{VERSION_TAG}{version}"] if version is not None else [])
    flt = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
        tags=FlowRunFilterTags(all_=tags),
    )
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=flt, sort=FlowRunSort.START_TIME_DESC, limit=10)


def run_version(run: Any) -> int | None:
    """The version a paused run waits on, from its tags."""
    for tag in run.tags:
        if tag.startswith(VERSION_TAG):
            return int(tag[len(VERSION_TAG) :])
    return None


def resume_waiting_run(
    model: str, version: int, *, approve: bool, approver: str, reason: str | None
) -> str | None:
    """Resume the retrain run paused for ``model/version``, if a Prefect server is configured.

    Returns the resumed flow-run id, or None when no server is configured or nothing waits.
    The registry decision has already been recorded by the caller; the flow sees it.
    """
    from prefect.exceptions import PrefectException
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None  # no server configured: do not start an ephemeral one just to look
    try:
        for run in paused_runs(model, version):
            resume_flow_run(
                run.id, run_input={"approve": approve, "approver": approver, "reason": reason or ""}
            )
            return str(run.id)
    except (httpx.HTTPError, PrefectException, RuntimeError, OSError) as exc:
        # The registry decision stands either way; say why the pause was not resumed.
        log.warning("could not resume the paused run for %s/%s: %s", model, version, exc)
    return None
