"""retrain: validate → train → evaluate → register → gates → staging → approval → production → deploy."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from checks.result import GateReport
from deployments.targets import make_target
from flows import card, events
from flows.approval import (
    ApprovalInput,
    already_decided,
    markdown_text,
    names_actor,
    record_form_decision,
    wait_for_decision,
)
from flows.artifacts import publish_card, publish_gates
from flows.config import PipelineConfig
from flows.data import load
from flows.steps import (
    evaluate,
    open_registry,
    production_version,
    register_version,
    run_gates,
    train_model,
    validate_data,
    write_card,
)
from registry.entities import Decision, ModelVersion
from registry.errors import (
    ApprovalRequired,
    GateFailed,
    InvalidInput,
    Refused,
)
from registry.registry import Registry
from registry.stages import Stage

# record() refuses the registry's own namespaces; a refused form approval is the flow's event.
REFUSED = "custom.approval_refused"


def _reject(reg: Registry, v: ModelVersion, actor: str | None, reason: str) -> None:
    """Record the flow's own rejection (a timeout, a failed gate) unless the version went back already."""
    who = actor or "flow"
    if reg.get_version(v.model, v.version).stage == Stage.STAGING:
        who = reg.reject(v.model, v.version, reason=reason, actor=actor).actor
    events.emit("rejected", v.model, v.version, who, reason=reason)


def _form_reject(
    reg: Registry, v: ModelVersion, answer: ApprovalInput, flow_actor: str | None
) -> tuple[str, str]:
    """Record the form's reject (it always counts); return (who, reason).

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
    return who, reason


def _approval_loop(
    reg: Registry,
    config: PipelineConfig,
    v: ModelVersion,
    report: GateReport,
    champion: ModelVersion | None,
    actor: str,
) -> tuple[str, str | None, str]:
    """Pause for decisions until the version is promoted or rejected; return (outcome, approver, reason).

    A refused approver (the registrant, one the policy does not allow, a bad code) is recorded
    and the form is shown once more with the reason; a second refusal rejects. A timeout rejects.
    """
    log = get_run_logger()
    timeout = config.approval_timeout or reg.policy.approval_timeout_seconds
    # Behind a server the token names the actor; a name given here would be refused.
    flow_actor = actor if names_actor(reg) else None
    note: str | None = None
    refusals = 0
    while True:
        events.emit("approval-requested", v.model, v.version, actor, timeout=timeout)
        # Read each round: an admin may change the policy while the run waits.
        authenticated_only = reg.policy.authenticated_approvals
        answer = wait_for_decision(
            v,
            card.approval_description(v, report, champion, note),
            timeout=timeout,
            poll=config.approval_poll,
            authenticated_only=authenticated_only,
        )
        if answer is None:
            # Approvals may have arrived outside the form (govflow approve without a reachable server).
            try:
                reg.transition(
                    v.model, v.version, Stage.PRODUCTION, actor=flow_actor, reason="approved outside the form"
                )
                approvers = [
                    a.actor
                    for a in reg.get_version(v.model, v.version).approvals
                    if a.decision == Decision.APPROVE
                ]
                return "promoted", approvers[-1] if approvers else None, "approved in the registry"
            except Refused:
                pass
            reason = f"no decision within {timeout} s (approval timed out)"
            _reject(reg, v, flow_actor, reason)
            return "rejected", None, reason
        if not answer.approve:
            who, reason = _form_reject(reg, v, answer, flow_actor)
            return "rejected", who, reason
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
            refusals += 1
            reg.record(
                REFUSED,
                model=v.model,
                version=v.version,
                actor=flow_actor,
                payload={"approver": typed, "code": bool(code), "reason": str(exc)},
            )
            log.warning("approval refused: %s", exc)
            if refusals > 1:
                reason = f"approval refused twice; last: {exc}"
                _reject(reg, v, flow_actor, reason)
                return "rejected", approver, reason
            note = markdown_text(f"Refused: {exc}. Another approver must decide.")
            continue
        try:
            promoter = approver if flow_actor is not None else None
            reg.transition(v.model, v.version, Stage.PRODUCTION, actor=promoter, reason=reason or None)
            return "promoted", approver, reason
        except ApprovalRequired as exc:
            if authenticated_only and claimed:
                note = markdown_text(f"{typed}'s approval is recorded as a claim and does not count: {exc}")
            else:
                note = markdown_text(f"Approval recorded; more are needed: {exc}")
        except (GateFailed, Refused) as exc:
            # A gate now failing, or the version moved by hand while paused.
            _reject(reg, v, flow_actor, str(exc))
            return "rejected", approver, str(exc)


@flow(name="retrain", log_prints=True)
def retrain(config_path: str) -> dict[str, Any]:
    """Train, register and gate a new version; promote and deploy it only after human approval."""
    log = get_run_logger()
    config = PipelineConfig.load(config_path)
    reg = open_registry(config)
    actor = reg.whoami()
    data = load(config)
    data_gate = validate_data(config, data)
    model = train_model(config, data)
    metrics, preds = evaluate(config, model, data)
    v = register_version(reg, config, model, data, metrics, actor)
    events.emit("registered", v.model, v.version, actor, sha256=v.artifact.sha256, metrics=metrics)
    log.info("registered %s/%s %s", v.model, v.version, metrics)
    champion = production_version(reg, v.model)
    report = run_gates(reg, config, v, data, preds, data_gate, champion, actor)
    publish_gates(v.model, v.version, report)
    result: dict[str, Any] = {
        "model": v.model,
        "version": v.version,
        "metrics": metrics,
        "gates_passed": report.passed,
    }
    if not report.passed:
        reason = "gates failed: " + ", ".join(r.name for r in report.failed)
        events.emit("rejected", v.model, v.version, actor, reason=reason)
        result.update(outcome="gates-failed", reason=reason)
    else:
        reg.transition(v.model, v.version, Stage.STAGING, actor=actor, reason="gates passed")
        outcome, approver, reason = _approval_loop(reg, config, v, report, champion, actor)
        result.update(outcome=outcome, approver=approver, reason=reason)
        if outcome == "promoted":
            events.emit(
                "promoted",
                v.model,
                v.version,
                approver or actor,
                from_version=champion.version if champion else None,
                to_version=v.version,
            )
            deployed = make_target(config.deploy).deploy(
                reg, v.model, v.version, actor=approver if names_actor(reg) else None
            )
            events.emit(
                "deployed",
                v.model,
                v.version,
                approver or actor,
                target=deployed.target,
                location=deployed.location,
                sha256=deployed.sha256,
            )
            result["deployed"] = deployed.model_dump(mode="json")
    final = reg.get_version(v.model, v.version)
    markdown = card.model_card(final, report)
    publish_card(v.model, markdown)
    result["card"] = str(write_card(v.model, v.version, markdown))
    log.info("retrain %s/%s: %s", v.model, v.version, result["outcome"])
    reg.close()
    return result
