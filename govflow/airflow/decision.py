"""Approval, promotion, deployment and the model card for the Airflow retrain (no Airflow import).

The approval answer comes from Airflow's human-in-the-loop result: the option chosen and
``responded_by_user``, the user Airflow's auth manager authenticated. It is recorded in the
registry as that user's decision on the ``airflow-hitl`` channel, and the registry applies its
rules to it: the registrant may not approve, nor may anyone the policy does not allow. A
timeout, or an answer with no user, rejects.
"""

from __future__ import annotations

from typing import Any

from deployments.targets import make_target
from flows import card, pipeline
from govflow.airflow.stages import RunInfo, open_config, own_version
from registry import identity, waiting
from registry.entities import Decision, ModelVersion
from registry.errors import ApprovalRequired, Forbidden, GateFailed, InvalidInput, Refused
from registry.registry import Registry
from registry.stages import Stage
from registry.validate import same_actor

CHANNEL = "airflow-hitl"
GRACE = 120  # seconds the registry's recorded deadline trails Airflow's response_timeout
APPROVE, REJECT = "Approve", "Reject"


def how_to_answer(registrant: str, timeout: int) -> str:
    """The approval body's instructions for Airflow's form."""
    return (
        "Choose **Approve** or **Reject**. Your Airflow user is recorded in the registry as the "
        f"decider; {registrant} registered this version and is refused as its approver. "
        f"No answer within {timeout} s **rejects**, unless the registry already holds the "
        "approvals the policy needs."
    )


def request(config_path: str, run: RunInfo, registered: dict[str, Any]) -> dict[str, Any]:
    """What the approval form shows (the Prefect form's description) and how long it waits.

    The wait is recorded in the registry (``run.waiting``), so ``govflow reconcile`` settles the
    version if Airflow never answers.
    """
    config, reg = open_config(config_path)
    try:
        v = own_version(reg, run, registered)
        timeout = config.approval_timeout or reg.policy.approval_timeout_seconds
        # The registry's deadline trails Airflow's, so reconcile never settles before Airflow answers.
        waiting.mark_waiting(
            reg, v, run_id=run.run_id, timeout=timeout + GRACE, orchestrator="airflow", actor=v.registered_by
        )
        body = card.approval_description(
            v,
            pipeline.gate_report(v),
            pipeline.production_version(reg, v.model),
            how=how_to_answer(v.registered_by, timeout),
        )
        return {
            "subject": f"Approve {v.model} v{v.version} for production?",
            "body": body,
            "timeout": timeout,
        }
    finally:
        reg.close()


def responder(answer: dict[str, Any]) -> str | None:
    """The Airflow user who answered, by login name; None for a timeout or an anonymous answer."""
    if answer.get("timedout"):
        return None
    user = answer.get("responded_by_user") or {}
    name = str(user.get("name") or user.get("id") or "").strip()
    return name or None


def _reject(reg: Registry, v: ModelVersion, reason: str, by: str | None = None) -> str:
    """Reject as ``by`` when the registry takes it from them, else as the pipeline (the registrant)."""
    with identity.acting(channel=CHANNEL):
        if by is not None:
            try:
                return reg.reject(v.model, v.version, reason=reason, actor=by).actor
            except (Refused, InvalidInput, Forbidden) as exc:
                reason = f"{reason} (rejected by {by}; recorded by the pipeline because: {exc})"
        if reg.get_version(v.model, v.version).stage != Stage.STAGING:
            return "-"  # decided meanwhile (reconcile, the registry): nothing left to reject
        return reg.reject(v.model, v.version, reason=reason, actor=v.registered_by).actor


def _approved_by(v: ModelVersion, user: str, where: str) -> bool:
    """Whether ``user`` already approved ``v`` in this review, answering this same Airflow run."""
    return any(
        a.current
        and a.decision == Decision.APPROVE
        and a.channel == CHANNEL
        and same_actor(a.actor, user)
        and a.reason == f"approved in {where}"
        for a in v.approvals
    )


def _outcome(v: ModelVersion, outcome: str, approver: str | None, reason: str) -> dict[str, Any]:
    return {"model": v.model, "version": v.version, "outcome": outcome, "approver": approver, "reason": reason}


def _settled_elsewhere(v: ModelVersion) -> dict[str, Any]:
    """The outcome when the version left staging before this run decided (the registry, reconcile)."""
    decisions = [a for a in v.approvals if a.target_stage == Stage.PRODUCTION]
    if v.stage == Stage.PRODUCTION:
        approvers = [a.actor for a in decisions if a.decision == Decision.APPROVE]
        return _outcome(v, "promoted", approvers[-1] if approvers else None, "promoted in the registry")
    last = decisions[-1].reason if decisions else None
    return _outcome(v, "rejected", None, f"decided in the registry: {last or v.stage.value}")


def record(config_path: str, run: RunInfo, registered: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Record the approval task's answer in the registry as the responder's decision.

    ``answer`` is what Airflow stored for the request (its HITL detail), read by the approval
    task itself. Approve by an identified user: that user's approval (the registry refuses the
    registrant and anyone the policy does not allow; a refusal rejects). Reject: that user's
    rejection. No user: rejected. Timeout: settled as the Prefect path settles one, promoted
    when the registry already holds the approvals the policy needs, else rejected.
    """
    config, reg = open_config(config_path)
    try:
        v = own_version(reg, run, registered)
        if v.stage != Stage.STAGING:
            return _settled_elsewhere(v)
        where = f"Airflow run {run.run_id}"
        user = responder(answer)
        if answer.get("timedout"):
            with identity.acting(channel=CHANNEL):
                settled = waiting.settle(
                    reg, v.model, v.version, reason=f"approval timed out: no answer in {where}", actor=v.registered_by
                )
            if settled.outcome == "promoted":
                return _outcome(v, "promoted", settled.approvers[-1] if settled.approvers else None, settled.reason)
            if settled.outcome == "untouched":
                return _settled_elsewhere(reg.get_version(v.model, v.version))
            return _outcome(v, "timed-out", None, settled.reason)
        if user is None:
            why = f"answer with no Airflow user in {where}; only an identified approval counts"
            return _outcome(v, "rejected", _reject(reg, v, why), why)
        if list(answer.get("chosen_options") or []) != [APPROVE]:
            why = f"rejected by {user} in {where}"
            return _outcome(v, "rejected", _reject(reg, v, why, by=user), why)
        try:
            # A retried task finds the approval it recorded and goes on.
            if not _approved_by(v, user, where):
                with identity.acting(channel=CHANNEL):
                    reg.approve(v.model, v.version, actor=user, reason=f"approved in {where}")
        except (Refused, InvalidInput, Forbidden) as exc:
            why = f"approval by {user} refused: {exc}"
            return _outcome(v, "rejected", _reject(reg, v, why), why)
        return _outcome(v, "approved", user, f"approved by {user} in {where}")
    finally:
        reg.close()


def promote(config_path: str, run: RunInfo, registered: dict[str, Any]) -> dict[str, Any]:
    """Promote on the approval this run recorded in the registry; nothing handed on by XCom counts.

    A staged version with no approval recorded for this run (the approval task marked done by
    hand, say) is rejected.
    """
    config, reg = open_config(config_path)
    try:
        v = own_version(reg, run, registered)
        if v.stage != Stage.STAGING:
            return _settled_elsewhere(v)
        where = f"Airflow run {run.run_id}"
        mine = [a.actor for a in v.approvals if _approved_by(v, a.actor, where)]
        if not mine:
            why = f"no approval recorded in the registry for {where}; only an answer Airflow recorded counts"
            return _outcome(v, "rejected", _reject(reg, v, why), why)
        user = mine[-1]
        try:
            with identity.acting(channel=CHANNEL):
                reg.transition(v.model, v.version, Stage.PRODUCTION, actor=user, reason=f"approved in {where}")
        except ApprovalRequired as exc:
            # The policy wants more approvers: the version stays staged for them (govflow approve).
            return _outcome(v, "approval-recorded", user, f"approval by {user} recorded; {exc}")
        except (GateFailed, Refused) as exc:
            why = f"promotion refused: {exc}"
            _reject(reg, v, why)
            return _outcome(v, "rejected", user, why)
        return _outcome(v, "promoted", user, f"approved by {user} in {where}")
    finally:
        reg.close()


def deploy(config_path: str, promoted: dict[str, Any]) -> dict[str, Any]:
    """Deploy the promoted version through the config's target, as its approver."""
    config, reg = open_config(config_path)
    try:
        done = make_target(config.deploy).deploy(
            reg, promoted["model"], promoted["version"], actor=promoted["approver"]
        )
        return done.model_dump(mode="json")
    finally:
        reg.close()


def outcome(config_path: str, run: RunInfo, registered: dict[str, Any]) -> dict[str, Any]:
    """The run's outcome as the registry holds it (nothing handed on by XCom), and its model card."""
    config, reg = open_config(config_path)
    try:
        v = own_version(reg, run, registered)
        report = pipeline.gate_report(v)
        decisions = [a for a in v.approvals if a.target_stage == Stage.PRODUCTION]
        approvers = [a.actor for a in decisions if a.decision == Decision.APPROVE]
        if v.stage == Stage.PRODUCTION:
            result = _outcome(v, "promoted", approvers[-1] if approvers else None, "promoted")
        elif v.stage == Stage.STAGING:
            result = _outcome(v, "approval-recorded", approvers[-1] if approvers else None, "waits for more approvals")
        elif not report.passed:
            failed = ", ".join(r.name for r in report.failed)
            result = _outcome(v, "gates-failed", None, f"gates failed: {failed}")
        else:
            last = decisions[-1] if decisions else None
            why = (last.reason if last else None) or v.stage.value
            timed_out = why.startswith("approval timed out")
            result = _outcome(v, "timed-out" if timed_out else "rejected", last.actor if last else None, why)
        result["card"] = str(pipeline.write_card(v.model, v.version, card.model_card(v, report)))
        return result
    finally:
        reg.close()
