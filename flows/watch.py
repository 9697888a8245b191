"""The monitor's check: the production version's drift reference against new data (no Prefect here).

The Prefect monitor flow and the Airflow monitor DAG both call ``check``; each then says what it
found in its own way (a Prefect event, an Airflow asset event).
"""

from __future__ import annotations

from typing import Any

from checks.drift import DriftReference, drift_gate
from checks.performance import metric_gate
from checks.result import GateResult
from flows import training
from flows.config import PipelineConfig
from flows.data import ensure_example
from flows.pipeline import production_version
from flows.preflight import positive_label
from flows.sources import read_slice
from registry import Registry
from registry.checkpoint import checkpoint_from_env
from registry.errors import InvalidInput


def check(
    reg: Registry, config: PipelineConfig, data_path: str | None, log: Any
) -> tuple[dict[str, Any], GateResult | None]:
    """Score the production version's drift (and performance, when labelled) on new data.

    Records every result as evidence on that version and returns the verdict with the drift
    gate's result (None when nothing is in production). Emits nothing: the caller does.
    """
    actor = reg.whoami()
    # None too before the first retrain (a schedule that runs before the model is registered).
    live = production_version(reg, config.model_name)
    if live is None:
        log.warning("%s has no production version; nothing to monitor", config.model_name)
        pin_audit_chain(reg, log)
        return {
            "model": config.model_name,
            "version": None,
            "outcome": "no-production",
            "verdict": "no-production",
            "reason": f"{config.model_name} has no production version",
        }, None
    if not live.drift_reference:
        raise InvalidInput(f"{live.ref} has no drift reference to compare against", field="drift_reference")
    if data_path is None:
        ensure_example(config)
    data = read_slice(config, data_path)
    frame = data.frame
    reference = DriftReference.model_validate(live.drift_reference)
    policy = reg.policy.drift
    features = [c.name for c in live.input_schema]
    # A model input missing from the new data is drift to act on, never a KeyError mid-run.
    drift = drift_gate(
        reference,
        frame,
        warn=policy.warn,
        act=policy.act,
        drift_share=policy.drift_share,
        required=features,
    )
    verdict = drift.details.get("verdict", "act" if not drift.passed else "ok")
    missing_inputs = drift.details.get("missing_inputs", [])
    results = [drift]
    if config.target in frame.columns and missing_inputs:
        log.warning("labelled data lacks model inputs %s; performance not scored", missing_inputs)
    elif config.target in frame.columns:
        model = reg.load_model(live.ref)
        positive = positive_label(config, frame[config.target])
        preds = training.predictions(model, frame[features], config.task, positive=positive)
        for name, bound in config.gates.metrics.items():
            results.append(
                metric_gate(
                    frame[config.target],
                    training.metric_input(preds, name),
                    name,
                    min=bound.min,
                    max=bound.max,
                    name=f"monitor.{name}",
                    pos_label=1 if positive is None else positive,
                )
            )
    # Where the rows came from: the URI, every file read, the window and the row count.
    provenance = {"data": data.uri, "data_files": list(data.files), "window": data.window, "rows": len(frame)}
    for r in results:
        reg.add_evidence(
            live.model,
            live.version,
            gate=r.name if r.name != "drift" else "monitor.drift",
            passed=r.passed,
            value=r.value,
            threshold=r.threshold,
            details={**r.details, "message": r.message, **provenance},
            actor=actor,
        )
    out = {
        "model": live.model,
        "version": live.version,
        "outcome": verdict,
        "verdict": verdict,
        "message": drift.message,
        "reason": drift.message,
        "data": data.uri,
        "drifted_features": drift.details.get("drifted", []),
        "missing_inputs": missing_inputs,
        "psi": drift.details.get("max_psi"),
        "performance": {r.name: r.value for r in results[1:]},
    }
    log.info("monitor %s: %s (%s)", live.ref, drift.message, data.uri)
    pin_audit_chain(reg, log)
    return out, drift


def pin_audit_chain(reg: Registry, log: Any) -> str | None:
    """With GOVFLOW_CHECKPOINT_KEY set, pin the audit chain in a signed checkpoint; log where.

    It goes to GOVFLOW_CHECKPOINT_OUT (a folder or s3:// prefix) as <count>.txt, by default in
    a checkpoints/ folder beside a SQLite registry. A broken chain fails the run.
    """
    where = checkpoint_from_env(reg)
    if where is not None:
        log.info("audit checkpoint written to %s", where)
    return where
