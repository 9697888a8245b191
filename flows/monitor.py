"""monitor: the production version's drift reference against new data, plus performance when labelled."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from checks.drift import DriftReference, drift_gate
from checks.performance import metric_gate
from flows import events, training
from flows.artifacts import publish_drift
from flows.config import PipelineConfig
from flows.data import read_table
from flows.steps import open_registry, production_version
from registry import Registry
from registry.checkpoint import checkpoint_from_env
from registry.errors import InvalidInput


@flow(name="monitor", log_prints=True)
def monitor(config_path: str, data_path: str) -> dict[str, Any]:
    """Run the drift gate on ``data_path``; above the act threshold emit ``drift-detected``."""
    log = get_run_logger()
    config = PipelineConfig.load(config_path)
    reg = open_registry(config)
    actor = reg.whoami()
    live = production_version(reg, config.model_name)
    if live is None:
        log.warning("%s has no production version; nothing to monitor", config.model_name)
        pin_audit_chain(reg, log)
        return {"model": config.model_name, "version": None, "verdict": "no-production"}
    if not live.drift_reference:
        raise InvalidInput(f"{live.ref} has no drift reference to compare against", field="drift_reference")
    path = config.resolve(data_path)
    assert path is not None
    frame = read_table(path)
    reference = DriftReference.model_validate(live.drift_reference)
    policy = reg.policy.drift
    drift = drift_gate(reference, frame, warn=policy.warn, act=policy.act, drift_share=policy.drift_share)
    verdict = drift.details.get("verdict", "act" if not drift.passed else "ok")
    results = [drift]
    if config.target in frame.columns:
        model = reg.load_model(live.ref)
        features = [c.name for c in live.input_schema]
        preds = training.predictions(model, frame[features], config.task)
        for name, bound in config.gates.metrics.items():
            results.append(
                metric_gate(
                    frame[config.target],
                    training.metric_input(preds, name),
                    name,
                    min=bound.min,
                    max=bound.max,
                    name=f"monitor.{name}",
                )
            )
    for r in results:
        reg.add_evidence(
            live.model,
            live.version,
            gate=r.name if r.name != "drift" else "monitor.drift",
            passed=r.passed,
            value=r.value,
            threshold=r.threshold,
            details={**r.details, "message": r.message, "data": path.resolve().as_uri()},
            actor=actor,
        )
    publish_drift(live.model, live.version, drift)
    out = {
        "model": live.model,
        "version": live.version,
        "verdict": verdict,
        "message": drift.message,
        "drifted_features": drift.details.get("drifted", []),
        "psi": drift.details.get("max_psi"),
        "performance": {r.name: r.value for r in results[1:]},
    }
    if verdict == "act":
        events.emit(
            "drift-detected",
            live.model,
            live.version,
            actor,
            psi=out["psi"],
            drifted_features=out["drifted_features"],
            verdict=verdict,
            data=str(path),
        )
    log.info("monitor %s: %s", live.ref, drift.message)
    pin_audit_chain(reg, log)
    reg.close()
    return out


def pin_audit_chain(reg: Registry, log: Any) -> str | None:
    """With GOVFLOW_CHECKPOINT_KEY set, pin the audit chain in a signed checkpoint; log where.

    It goes to GOVFLOW_CHECKPOINT_OUT (a folder or s3:// prefix) as <count>.txt, by default in
    a checkpoints/ folder beside a SQLite registry. A broken chain fails the run.
    """
    where = checkpoint_from_env(reg)
    if where is not None:
        log.info("audit checkpoint written to %s", where)
    return where
