"""retrain: validate → train → evaluate → register → gates → staging → approval → production → deploy."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from checks.result import GateReport
from deployments.targets import make_target
from flows import card, events
from flows.approval import deployed, names_actor
from flows.artifacts import publish_card, publish_gates, publish_outcome
from flows.config import PipelineConfig
from flows.data import load
from flows.decide import approval_step
from flows.outcomes import finish, refused
from flows.pipeline import gate_report, reference_schema, run_version
from flows.preflight import target_positive
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
from registry.entities import ModelVersion, RunRef
from registry.errors import GovflowError
from registry.registry import Registry
from registry.stages import Stage


@flow(name="retrain", log_prints=True)
def retrain(config_path: str) -> Any:
    """Train, register and gate a new version; promote and deploy it only after human approval.

    Ends in a Completed state named Promoted, GatesFailed, Rejected or TimedOut (the result
    dict carries ``outcome``); bad input ends Failed with its one-line refusal.
    """
    try:
        result = _retrain(config_path)
    except GovflowError as exc:
        return refused(exc)
    publish_outcome(result)
    return finish(result)


def _retrain(config_path: str) -> dict[str, Any]:
    log = get_run_logger()
    config = PipelineConfig.load(config_path)
    reg = open_registry(config)
    try:
        actor = reg.whoami()
        # A suspended run starts again from the top when resumed: find what it already did.
        v = own_version(reg, config.model_name) if deployed() else None
        if v is None:
            built, report, champion = _build(reg, config, actor)
            if built is None:
                return _data_gate_failed(config, report)
            v = built
        else:
            log.info("resumed: %s was registered by this run; continuing with its approval", v.ref)
            report, champion = gate_report(v), production_version(reg, v.model)
        result: dict[str, Any] = {
            "model": v.model,
            "version": v.version,
            "metrics": v.metrics,
            "gates_passed": report.passed,
        }
        stage = reg.get_version(v.model, v.version).stage
        if not report.passed:
            reason = "gates failed: " + ", ".join(r.name for r in report.failed)
            if stage == Stage.DEVELOPMENT:
                events.emit("rejected", v.model, v.version, actor, reason=reason)
            result.update(outcome="gates-failed", reason=reason)
        else:
            if stage == Stage.DEVELOPMENT and not reg.get_version(v.model, v.version).approvals:
                reg.transition(v.model, v.version, Stage.STAGING, actor=actor, reason="gates passed")
            decided = approval_step(reg, config, v, report, champion, actor)
            result.update(outcome=decided.outcome, approver=decided.approver, reason=decided.reason)
            if decided.outcome == "promoted":
                result["deployed"] = _promote(reg, config, v, champion, decided.approver, actor)
        final = reg.get_version(v.model, v.version)
        markdown = card.model_card(final, report)
        publish_card(v.model, markdown)
        result["card"] = str(write_card(v.model, v.version, markdown))
        log.info("retrain %s/%s: %s", v.model, v.version, result["outcome"])
        return result
    finally:
        reg.close()


def _build(
    reg: Registry, config: PipelineConfig, actor: str
) -> tuple[ModelVersion | None, GateReport, ModelVersion | None]:
    """Validate, train, evaluate, register and gate a new version.

    A failed data gate stops here, before training: no version (None) and a report holding
    only the data gate, so bad data never leaves an orphan version behind.
    """
    log = get_run_logger()
    data = load(config)
    champion = production_version(reg, config.model_name)  # None on the model's first retrain
    target_positive(config, data.train)  # a target it cannot score is refused here, in one line
    data_gate, positive = validate_data(config, data, reference_schema(champion, data, config))
    if not data_gate.passed:
        log.warning("data gate failed; nothing trained or registered: %s", data_gate.message)
        return None, GateReport(results=[data_gate]), champion
    data = replace(data, positive_label=positive)
    model = train_model(config, data)
    metrics, preds = evaluate(config, model, data)
    v = register_version(reg, config, model, data, metrics, actor)
    events.emit("registered", v.model, v.version, actor, sha256=v.artifact.sha256, metrics=metrics)
    log.info("registered %s/%s %s", v.model, v.version, metrics)
    report = run_gates(reg, config, v, data, preds, data_gate, champion, actor)
    publish_gates(v.model, v.version, report)
    return v, report, champion


def _data_gate_failed(config: PipelineConfig, report: GateReport) -> dict[str, Any]:
    """The result of a run stopped by its data gate: nothing registered, the gate's evidence kept."""
    gate = report.results[0]
    get_run_logger().info("retrain %s: gates-failed before training (data)", config.model_name)
    return {
        "model": config.model_name,
        "version": None,
        "metrics": {},
        "gates_passed": False,
        "outcome": "gates-failed",
        "reason": f"data gate failed: {gate.message}",
        "data_gate": gate.model_dump(mode="json"),
    }


def _promote(
    reg: Registry,
    config: PipelineConfig,
    v: ModelVersion,
    champion: ModelVersion | None,
    approver: str | None,
    actor: str,
) -> dict[str, Any]:
    """Emit the promotion and deploy the version through the configured target."""
    previous = champion.version if champion is not None and champion.version != v.version else None
    events.emit(
        "promoted", v.model, v.version, approver or actor, from_version=previous, to_version=v.version
    )
    deployed_to = make_target(config.deploy).deploy(
        reg, v.model, v.version, actor=approver if names_actor(reg) else None
    )
    events.emit(
        "deployed",
        v.model,
        v.version,
        approver or actor,
        target=deployed_to.target,
        location=deployed_to.location,
        sha256=deployed_to.sha256,
    )
    return deployed_to.model_dump(mode="json")


def own_version(reg: Registry, name: str) -> ModelVersion | None:
    """The version this flow run registered before it was suspended, if any."""
    run_id = flow_run.get_id()
    if not run_id:
        return None
    return run_version(reg, name, RunRef(flow_run_id=str(run_id), flow_name=flow_run.get_flow_name()))
