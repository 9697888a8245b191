"""The human approval step: a paused flow run with a typed form, and resuming it from the CLI.

The form's defaults are the safe answer: resuming it untouched rejects. A timeout rejects too.
The registry decides who may approve and what counts; the flow only relays what it was told.
A name typed into the form is a claim (``claimed_by``), not an identity: under the policy's
``authenticated_approvals`` only a one-time code from ``govflow approve NAME V --code`` makes a
form approval count. A reject from the form always counts.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from flows.approval_hint import decision_commands, shell_of
from registry import identity
from registry.entities import Approval, Decision, ModelVersion
from registry.errors import InvalidInput
from registry.registry import Registry
from registry.validate import same_actor

log = logging.getLogger(__name__)
MODEL_TAG = "govflow-model:"
VERSION_TAG = "govflow-version:"
FORM_CHANNEL = "prefect-form"


class ApprovalInput(RunInput):
    """The approval form shown in the Prefect UI."""

    approve: bool = Field(
        default=False, title="Approve", description="Switch on to approve. Left off, the version is rejected."
    )
    approver: str = Field(
        default="",
        title="Approver",
        description="Your name, recorded as typed: a claim, not a proof of who you are.",
    )
    reason: str = Field(default="", title="Reason", description="Why you approve or reject.")
    code: str = Field(
        default="",
        title="Code",
        description="Optional: a one-time code from `govflow approve NAME V --code`; "
        "it records the approval as the identity that asked for the code.",
    )


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~-])")


def markdown_text(text: str) -> str:
    """``text`` escaped for the form's Markdown, so a typed name cannot add links, HTML or layout."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def form_notice(model: str, version: int, *, authenticated_only: bool) -> str:
    """What the form says about identity, above the version's card."""
    if not authenticated_only:
        return (
            "> The name you type is recorded as given. A code from "
            f"`govflow approve {model} {version} --code`, pasted into *Code*, records the "
            "approval under the identity that asked for it.\n\n"
        )
    return (
        "> **A typed name does not count toward the approvals here.** The policy in force "
        "counts only authenticated approvals; an approval with just a name is recorded as a "
        "claim and the run waits again. To approve as yourself, either run "
        f"`govflow approve {model} {version}` (it records your approval and resumes this run), "
        f"or run `govflow approve {model} {version} --code` and paste the one-time code into "
        "*Code* before switching *Approve* on. A reject from this form always counts.\n\n"
    )


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


def deployed() -> bool:
    """Whether the current flow run belongs to a deployment (so it can suspend and be rescheduled)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


def round_key(version: ModelVersion, round_no: int) -> str:
    """The pause key of one approval round: the same on every rerun of the run."""
    return f"approval-v{version.version}-r{round_no}"


def rounds_asked(version: ModelVersion) -> int:
    """How many approval rounds this run has already suspended for (0 on a first run)."""
    run_id = flow_run.get_id()
    if not run_id:
        return 0
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        keys = client.read_flow_run(UUID(run_id)).empirical_policy.pause_keys or set()
    prefix = f"approval-v{version.version}-r"
    used = [int(k[len(prefix) :]) for k in keys if k.startswith(prefix) and k[len(prefix) :].isdigit()]
    return max(used) + 1 if used else 0


def announce(reg: Any, version: ModelVersion, deadline: datetime, *, suspended: bool) -> None:
    """Log how to decide: the approve command, ready to paste into this run's shell, and the form."""
    run_log = get_run_logger()
    ui = _ui_url()
    how = "suspended; no process waits" if suspended else "paused in this process"
    approve, reject = decision_commands(version, shell_of(reg))
    run_log.info(
        "waiting for approval of %s/%s until %s (%s). Approve with: %s (reject: %s)%s",
        version.model,
        version.version,
        deadline.isoformat(timespec="seconds"),
        how,
        approve,
        reject,
        f"; or in the Prefect UI: {ui}" if ui else "",
    )


def _ui_url() -> str | None:
    """The run's page in the Prefect UI, from PREFECT_UI_URL or else the API's address."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    run_id = flow_run.get_id()
    base = PREFECT_UI_URL.value()
    api = PREFECT_API_URL.value()
    if not base and api and str(api).rstrip("/").endswith("/api"):
        base = str(api).rstrip("/")[: -len("/api")]
    return f"{str(base).rstrip('/')}/runs/flow-run/{run_id}" if base and run_id else None


def wait_for_decision(
    version: ModelVersion,
    description: str,
    *,
    timeout: int,
    poll: int,
    authenticated_only: bool = False,
    round_no: int = 0,
) -> ApprovalInput | None:
    """Wait for the form's answer; ``None`` when an in-process pause timed out.

    A deployed run suspends: the process exits, and on resume the run is rescheduled on any
    worker and starts again from the top; calling this again with the same round returns the
    answer given. An in-process run (no deployment) pauses and polls.
    """
    _tag_run(version.model, version.version)
    text = form_notice(version.model, version.version, authenticated_only=authenticated_only) + description
    form = ApprovalInput.with_initial_data(description=text, approve=False, approver="", reason="", code="")
    if deployed():
        return suspend_flow_run(
            wait_for_input=form, timeout=max(timeout, 1), key=round_key(version, round_no)
        )
    try:
        return pause_flow_run(wait_for_input=form, timeout=max(timeout, 1), poll_interval=poll)
    except FlowPauseTimeout:
        _running_again()
        return None


def _running_again() -> None:
    """After an in-process pause timed out, take the run back to Running so it can record the outcome.

    The server refuses any transition out of an expired pause (or has already failed the run),
    so without this the run could only end Failed instead of named TimedOut.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    run_id = flow_run.get_id()
    if run_id:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(run_id), Running(message="approval timed out"), force=True)


def already_decided(reg: Registry, version: ModelVersion, actor: str, decision: Decision) -> bool:
    """Whether ``actor`` (however spelled) already recorded ``decision`` in the current review."""
    current = reg.get_version(version.model, version.version)
    return any(a.current and same_actor(a.actor, actor) and a.decision == decision for a in current.approvals)


def names_actor(reg: Any) -> bool:
    """Whether the flow names the actor itself: embedded, yes; behind a server the token does."""
    return isinstance(reg, Registry)


def record_form_decision(reg: Any, version: ModelVersion, answer: ApprovalInput) -> Approval:
    """Record what the form says, on the ``prefect-form`` channel, with the typed name as a claim.

    A pasted code is passed on, and the registry records the approval as the code's principal.
    Refuses (``InvalidInput``) an approval with neither a name nor a code; the registry refuses
    the rest (the registrant, a bad, used or expired code, a repeat decision).
    """
    typed = answer.approver.strip() or None
    code = answer.code.strip() or None
    reason = answer.reason.strip() or None
    with identity.acting(channel=FORM_CHANNEL):
        if not answer.approve:
            reason = reason or "rejected in the approval form"
            if typed is None:  # nobody named: the flow's own identity records the reject
                return reg.reject(version.model, version.version, reason=reason)
            return reg.reject(version.model, version.version, reason=reason, claimed_by=typed)
        if code is not None:  # the code names the approver; a typed name adds nothing
            return reg.approve(version.model, version.version, reason=reason, code=code)
        if typed is None:
            raise InvalidInput("approver: give your name or a code to approve", field="approver")
        return reg.approve(version.model, version.version, reason=reason, claimed_by=typed)


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
