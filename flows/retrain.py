"""retrain: validate → train → evaluate → register → gates → staging → approval → production → deploy."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from checks.result import GateReport
from deployments.targets import make_target
from flows import card, events
from flows.approval import already_decided, wait_for_decision
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
from registry.config import resolve_actor
from registry.entities import Decision, ModelVersion
from registry.errors import (
    ApprovalRequired,
    GateFailed,
    InvalidInput,
    NotAnApprover,
    Refused,
    SeparationOfDuties,
)
from registry.registry import Registry
from registry.stages import Stage


def _reject(reg: Registry, v: ModelVersion, actor: str, reason: str, *, fallback: str) -> None:
    """Record a rejection unless one already sent the version back (e.g. from the CLI).

    When the registry refuses ``actor`` (say, an approver who already decided in this review),
    the flow's own identity records it, naming the reviewer in the reason.
    """
    if reg.get_version(v.model, v.version).stage == Stage.STAGING:
        try:
            reg.reject(v.model, v.version, reason=reason, actor=actor)
        except Refused as exc:
            reason = f"{reason} (rejected by {actor}; recorded by {fallback} because: {exc})"
            actor = fallback
            reg.reject(v.model, v.version, reason=reason, actor=actor)
    events.emit("rejected", v.model, v.version, actor, reason=reason)


def _approval_loop(
    reg: Registry,
    config: PipelineConfig,
    v: ModelVersion,
    report: GateReport,
    champion: ModelVersion | None,
    actor: str,
) -> tuple[str, str | None, str]:
    """Pause for decisions until the version is promoted or rejected; return (outcome, approver, reason).

    A refused approver (the registrant, or one the policy does not allow) is recorded and the
    form is shown once more with the reason; a second refusal rejects. A timeout rejects.
    """
    log = get_run_logger()
    timeout = config.approval_timeout or reg.policy.approval_timeout_seconds
    note: str | None = None
    refusals = 0
    while True:
        events.emit("approval-requested", v.model, v.version, actor, timeout=timeout)
        answer = wait_for_decision(
            v,
            card.approval_description(v, report, champion, note),
            timeout=timeout,
            poll=config.approval_poll,
        )
        if answer is None:
            # Approvals may have arrived outside the form (govflow approve without a reachable server).
            try:
                reg.transition(
                    v.model, v.version, Stage.PRODUCTION, actor=actor, reason="approved outside the form"
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
            _reject(reg, v, actor, reason, fallback=actor)
            return "rejected", None, reason
        approver = answer.approver.strip() or actor
        if not answer.approve:
            reason = answer.reason.strip() or "rejected in the approval form"
            _reject(reg, v, approver, reason, fallback=actor)
            return "rejected", approver, reason
        try:
            if not answer.approver.strip():
                raise InvalidInput("approver: give your identity to approve", field="approver")
            if not already_decided(reg, v, approver, Decision.APPROVE):
                reg.approve(v.model, v.version, actor=approver, reason=answer.reason.strip() or None)
            reg.transition(v.model, v.version, Stage.PRODUCTION, actor=approver, reason=answer.reason or None)
            return "promoted", approver, answer.reason.strip()
        except ApprovalRequired as exc:
            note = f"Approval recorded; more are needed: {exc}"
        except (SeparationOfDuties, NotAnApprover, InvalidInput) as exc:
            refusals += 1
            reg.record(
                "approval.refused",
                model=v.model,
                version=v.version,
                actor=approver,
                payload={"approver": approver, "reason": str(exc)},
            )
            log.warning("approval refused: %s", exc)
            if refusals > 1:
                reason = f"approval refused twice; last: {exc}"
                _reject(reg, v, actor, reason, fallback=actor)
                return "rejected", approver, reason
            note = f"Refused: {exc}. Another approver must decide."
        except (GateFailed, Refused) as exc:
            # A gate now failing, or the version moved by hand while paused.
            _reject(reg, v, actor, str(exc), fallback=actor)
            return "rejected", approver, str(exc)


@flow(name="retrain", log_prints=True)
def retrain(config_path: str) -> dict[str, Any]:
    """Train, register and gate a new version; promote and deploy it only after human approval."""
    log = get_run_logger()
    config = PipelineConfig.load(config_path)
    reg = open_registry(config)
    actor = resolve_actor()
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
            deployed = make_target(config.deploy).deploy(reg, v.model, v.version, actor=approver)
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
