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
from govflow.airflow.stages import champion, open_config
from registry import identity, waiting
from registry.entities import Decision, ModelVersion
from registry.errors import ApprovalRequired, Forbidden, GateFailed, InvalidInput, Refused
from registry.registry import Registry
from registry.stages import Stage
from registry.validate import same_actor

CHANNEL = "airflow-hitl"
APPROVE, REJECT = "Approve", "Reject"


def how_to_answer(registrant: str, timeout: int) -> str:
    """The approval body's instructions for Airflow's form."""
    return (
        "Choose **Approve** or **Reject**. Your Airflow user is recorded in the registry as the "
        f"decider; {registrant} registered this version and is refused as its approver. "
        f"No answer within {timeout} s **rejects**."
    )


def request(config_path: str, run_id: str, registered: dict[str, Any]) -> dict[str, Any]:
    """What the approval form shows (the Prefect form's description) and how long it waits.

    The wait is recorded in the registry (``run.waiting``), so ``govflow reconcile`` settles the
    version if Airflow never answers.
    """
    config, reg = open_config(config_path)
    try:
        v = reg.get_version(registered["model"], registered["version"])
        timeout = config.approval_timeout or reg.policy.approval_timeout_seconds
        waiting.mark_waiting(
            reg, v, run_id=run_id, timeout=timeout, orchestrator="airflow", actor=v.registered_by
        )
        body = card.approval_description(
            v,
            pipeline.gate_report(v),
            champion(reg, v.model),
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


def promote(config_path: str, run_id: str, registered: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Record the answer as the responder's decision and promote on an accepted approval."""
    config, reg = open_config(config_path)
    try:
        v = reg.get_version(registered["model"], registered["version"])
        if v.stage != Stage.STAGING:  # decided in the registry while Airflow waited
            done = "promoted" if v.stage == Stage.PRODUCTION else "rejected"
            return _outcome(v, done, None, f"decided in the registry while waiting: {v.stage.value}")
        chosen = list(answer.get("chosen_options") or [])
        user = responder(answer)
        where = f"Airflow run {run_id}"
        if answer.get("timedout"):
            why = f"approval timed out: no answer in {where}"
            _reject(reg, v, why)
            return _outcome(v, "timed-out", None, why)
        if user is None:
            why = f"answer with no Airflow user in {where}; only an identified approval counts"
            _reject(reg, v, why)
            return _outcome(v, "rejected", None, why)
        if chosen != [APPROVE]:
            why = f"rejected by {user} in {where}"
            return _outcome(v, "rejected", _reject(reg, v, why, by=user), why)
        try:
            # A retried promote task finds the approval it recorded and goes on to the promotion.
            if not _approved_by(v, user, where):
                with identity.acting(channel=CHANNEL):
                    reg.approve(v.model, v.version, actor=user, reason=f"approved in {where}")
        except (Refused, InvalidInput, Forbidden) as exc:
            why = f"approval by {user} refused: {exc}"
            _reject(reg, v, why)
            return _outcome(v, "rejected", user, why)
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


def model_card(config_path: str, model: str, version: int) -> str:
    """Write the version's model card (as the Prefect flow does) and return its path."""
    config, reg = open_config(config_path)
    try:
        final = reg.get_version(model, version)
        markdown = card.model_card(final, pipeline.gate_report(final))
        return str(pipeline.write_card(model, version, markdown))
    finally:
        reg.close()
