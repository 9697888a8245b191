"""The approval step of a retrain: wait for decisions until the version is promoted or rejected.

Runs the same way paused in-process and suspended on a deployment. A suspended run starts again
from the top on resume, so every round here is replayable: the round number comes from the pause
keys the run has used, refusals are counted in the registry, and the deadline recorded in the
registry on the first wait holds for every later round. Decisions made in the registry while the
run waits (``govflow approve`` with no reachable Prefect API, the registry server) are honoured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect import get_run_logger
from prefect.runtime import flow_run

from checks.result import GateReport
from flows import card, events
from flows.approval import (
    ApprovalInput,
    already_decided,
    announce,
    deployed,
    markdown_text,
    names_actor,
    record_form_decision,
    rounds_asked,
    wait_for_decision,
)
from flows.config import PipelineConfig
from registry import waiting
from registry.entities import Decision, ModelVersion
from registry.errors import ApprovalRequired, GateFailed, InvalidInput, Refused
from registry.registry import Registry
from registry.stages import Stage

# record() refuses the registry's own namespaces; a refused form approval is the flow's event.
REFUSED = "custom.approval_refused"


@dataclass(frozen=True)
class Outcome:
    """How the approval step ended."""

    outcome: str  # promoted | rejected | timed-out
    approver: str | None
    reason: str


def _reject(reg: Registry, v: ModelVersion, actor: str | None, reason: str) -> None:
    """Record the flow's own rejection (a timeout, a refusal) unless the version went back already."""
    who = actor or "flow"
    if reg.get_version(v.model, v.version).stage == Stage.STAGING:
        who = reg.reject(v.model, v.version, reason=reason, actor=actor).actor
    events.emit("rejected", v.model, v.version, who, reason=reason)


def _form_reject(reg: Registry, v: ModelVersion, answer: ApprovalInput, flow_actor: str | None) -> Outcome:
    """Record the form's reject (it always counts).

    When the registry refuses the typed name (say, one who already decided in this review), the
    flow's own identity records the rejection, naming the reviewer in the reason.
    """
    reason = answer.reason.strip() or "rejected in the approval form"
    who = answer.approver.strip() or flow_actor or "flow"
    if reg.get_version(v.model, v.version).stage == Stage.STAGING:
        try:
            who = record_form_decision(reg, v, answer).actor
        except (Refused, InvalidInput) as exc:
            reason = f"{reason} (rejected by {who}; recorded by the flow because: {exc})"
            who = reg.reject(v.model, v.version, reason=reason, actor=flow_actor).actor
    events.emit("rejected", v.model, v.version, who, reason=reason)
    return Outcome("rejected", who, reason)


def decided_elsewhere(reg: Registry, v: ModelVersion) -> Outcome | None:
    """The outcome when the registry moved the version out of staging while the run waited."""
    now = reg.get_version(v.model, v.version)
    if now.stage == Stage.STAGING:
        return None
    promoted = any(
        c.version == v.version and c.to_stage == Stage.PRODUCTION and c.at >= v.stage_changed_at
        for c in reg.history(v.model)
    )
    decisions = [a for a in now.approvals if a.target_stage == Stage.PRODUCTION]
    if promoted:
        approvers = [a.actor for a in decisions if a.decision == Decision.APPROVE]
        return Outcome(
            "promoted", approvers[-1] if approvers else None, "promoted in the registry while waiting"
        )
    last = decisions[-1] if decisions else None
    reason = (
        last.reason if last and last.decision == Decision.REJECT else None
    ) or f"moved to {now.stage.value}"
    return Outcome(
        "rejected", last.actor if last else None, f"decided in the registry while waiting: {reason}"
    )


def _refusals(reg: Registry, v: ModelVersion) -> int:
    """Refused form approvals recorded for this version's current review."""
    since = reg.get_version(v.model, v.version).stage_changed_at
    return sum(
        1
        for e in reg.audit_log(model=v.model)
        if e.action == REFUSED and e.version == v.version and e.at >= since
    )


def _on_timeout(reg: Registry, v: ModelVersion, flow_actor: str | None, timeout: int) -> Outcome:
    """An in-process wait timed out: the registry's approvals still promote; otherwise reject."""
    settled = waiting.settle(
        reg, v.model, v.version, reason=f"approval timed out: no decision within {timeout} s", actor=flow_actor
    )
    if settled.outcome == "promoted":
        return Outcome(
            "promoted", settled.approvers[-1] if settled.approvers else None, "approved in the registry"
        )
    if settled.outcome == "untouched":
        return decided_elsewhere(reg, v) or Outcome("timed-out", None, settled.reason)
    events.emit("rejected", v.model, v.version, flow_actor or "flow", reason=settled.reason)
    return Outcome("timed-out", None, f"no decision within {timeout} s (approval timed out)")


def approval_step(
    reg: Registry,
    config: PipelineConfig,
    v: ModelVersion,
    report: GateReport,
    champion: ModelVersion | None,
    actor: str,
) -> Outcome:
    """Wait for decisions until the version is promoted or rejected.

    A refused approver (the registrant, one the policy does not allow, a bad code) is recorded
    and the form is shown once more with the reason; a second refusal rejects. A timeout rejects
    unless the registry already holds the approvals the policy needs.
    """
    log = get_run_logger()
    elsewhere = decided_elsewhere(reg, v)
    if elsewhere is not None:  # a rerun after the decision was taken
        return elsewhere
    timeout = config.approval_timeout or reg.policy.approval_timeout_seconds
    # Behind a server the token names the actor; a name given here would be refused.
    flow_actor = actor if names_actor(reg) else None
    run_id = flow_run.get_id()
    wait = waiting.mark_waiting(
        reg, v, run_id=str(run_id) if run_id else None, timeout=timeout, actor=flow_actor
    )
    suspended = deployed()
    asked = rounds_asked(v) if suspended else 0
    # A rerun of a suspended run replays the last round asked: its answer is waiting.
    round_no, asked_before = max(asked - 1, 0), asked > 0
    note: str | None = None
    # Checked above and after every answer; between them only this run acts on the version.
    while True:
        remaining = int((wait.deadline - datetime.now(wait.deadline.tzinfo)).total_seconds())
        if remaining <= 0 and not asked_before:
            return _on_timeout(reg, v, flow_actor, timeout)
        if not asked_before:
            events.emit("approval-requested", v.model, v.version, actor, timeout=timeout)
            announce(reg, v, wait.deadline, suspended=suspended)
        # Read each round: an admin may change the policy while the run waits.
        authenticated_only = reg.policy.authenticated_approvals
        answer = wait_for_decision(
            v,
            card.approval_description(v, report, champion, note),
            timeout=max(remaining, 1),
            poll=config.approval_poll,
            authenticated_only=authenticated_only,
            round_no=round_no,
        )
        asked_before = False
        if answer is None:
            return _on_timeout(reg, v, flow_actor, timeout)
        elsewhere = decided_elsewhere(reg, v)
        if elsewhere is not None:
            return elsewhere
        round_no += 1
        if not answer.approve:
            return _form_reject(reg, v, answer, flow_actor)
        outcome, note = _approve(reg, v, answer, flow_actor, authenticated_only, log)
        if outcome is not None:
            return outcome


def _approve(
    reg: Registry,
    v: ModelVersion,
    answer: ApprovalInput,
    flow_actor: str | None,
    authenticated_only: bool,
    log: object,
) -> tuple[Outcome | None, str | None]:
    """Record an approval from the form and try to promote; (outcome, None) or (None, note to show)."""
    typed = answer.approver.strip()
    code = answer.code.strip()
    reason = answer.reason.strip()
    approver = typed or None
    claimed = False
    try:
        # `govflow approve` records its decision, then resumes the run with its name.
        if code or not typed or not already_decided(reg, v, typed, Decision.APPROVE):
            decided = record_form_decision(reg, v, answer)
            approver, claimed = decided.actor, decided.claimed_by is not None
    except (Refused, InvalidInput) as exc:
        # The registrant, a non-approver, a bad, used or expired code: ask once more.
        reg.record(
            REFUSED,
            model=v.model,
            version=v.version,
            actor=flow_actor,
            payload={"approver": typed, "code": bool(code), "reason": str(exc)},
        )
        log.warning("approval refused: %s", exc)  # type: ignore[attr-defined]
        if _refusals(reg, v) > 1:
            reason = f"approval refused twice; last: {exc}"
            _reject(reg, v, flow_actor, reason)
            return Outcome("rejected", approver, reason), None
        return None, markdown_text(f"Refused: {exc}. Another approver must decide.")
    try:
        promoter = approver if flow_actor is not None else None
        reg.transition(v.model, v.version, Stage.PRODUCTION, actor=promoter, reason=reason or None)
        return Outcome("promoted", approver, reason), None
    except ApprovalRequired as exc:
        if authenticated_only and claimed:
            return None, markdown_text(f"{typed}'s approval is recorded as a claim and does not count: {exc}")
        return None, markdown_text(f"Approval recorded; more are needed: {exc}")
    except (GateFailed, Refused) as exc:
        # A gate now failing, or the version moved by hand while waiting.
        _reject(reg, v, flow_actor, str(exc))
        return Outcome("rejected", approver, str(exc)), None
