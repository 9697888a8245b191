"""The retrain stages as plain functions over registry/ and checks/: no orchestrator here.

The Prefect flows wrap them as tasks (``flows.steps``); the Airflow DAGs call them from their
own tasks (``govflow.airflow``), so both orchestrators run the same code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from checks.champion import champion_gate
from checks.drift import DriftReference
from checks.fairness import fairness_gate
from checks.performance import metric_gate, score
from checks.result import GateReport, GateResult
from flows import preflight, training
from flows.config import PipelineConfig
from flows.data import PipelineData, feature_columns
from flows.lineage import code_ref
from registry.entities import Lineage, ModelVersion, RunRef
from registry.errors import AliasNotFound, ModelNotFound, NotFound
from registry.registry import Registry


def open_registry(config: PipelineConfig) -> Registry:
    """The registry the config names, else the GOVFLOW_* environment's."""
    policy = config.resolve(config.policy)
    return Registry(url=config.registry_url, artifact_root=config.artifact_root, policy=policy)


def validate_data(
    config: PipelineConfig, data: PipelineData, reference_schema: dict[str, str] | None = None
) -> tuple[GateResult, Any]:
    """The data gate (preflight checks and the contract) and the target's positive label."""
    return preflight.data_gate(config, data, reference_schema)


def train_model(config: PipelineConfig, data: PipelineData) -> Any:
    """Fit the configured estimator on the training rows."""
    features = feature_columns(config, data.train)
    return training.train(config.estimator, data.train[features], data.train[config.target])


def evaluate(
    config: PipelineConfig, model: Any, data: PipelineData
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics on the eval rows for every metric the gates name, and the raw predictions."""
    features = feature_columns(config, data.eval)
    preds = training.predictions(model, data.eval[features], config.task, positive=data.positive_label)
    metrics: dict[str, float] = {}
    for name in config.gates.metrics:
        metrics[name] = score(
            data.eval[config.target], training.metric_input(preds, name), name, pos_label=_pos(data)
        )
    return metrics, preds


def _pos(data: PipelineData) -> Any:
    # Regression has no positive label; the metric functions' default then applies.
    return 1 if data.positive_label is None else data.positive_label


def register_version(
    reg: Registry,
    config: PipelineConfig,
    model: Any,
    data: PipelineData,
    metrics: dict[str, float],
    actor: str,
    run: RunRef,
) -> ModelVersion:
    """Register the model with lineage (``run`` names the orchestrator's run), input schema and
    the drift reference of its training data."""
    features = feature_columns(config, data.train)
    reference = DriftReference.fit(data.reference[features])
    lineage = Lineage(datasets=data.datasets, code=code_ref(), run=run)
    params = json.loads(json.dumps(config.estimator.params, default=str))
    return reg.register_model(
        config.model_name,
        model,
        actor=actor,
        metrics=metrics,
        params={k: v for k, v in params.items() if isinstance(v, str | int | float | bool) or v is None},
        tags={
            "task": config.task,
            "estimator": config.estimator.import_path,
            **split_tags(config, data),
            **({"positive_label": str(data.positive_label)} if data.positive_label is not None else {}),
        },
        lineage=lineage,
        input_schema=training.input_schema(data.train[features]),
        drift_reference=reference.model_dump(mode="json"),
    )


def split_tags(config: PipelineConfig, data: PipelineData | None = None) -> dict[str, str]:
    """The split rule as tags, so evidence packs can show how eval rows were held out.

    Each side's rows also have their own lineage record (``flows.data.describe_split``); the
    tags add the rule's settings and the digest of the whole file that was split.
    """
    if config.data.path is None:
        return {"split": "separate train and eval files"}
    rule = config.data.split
    tags = {
        "split": f"shuffle with seed {rule.seed}, hold out {rule.eval_fraction:g} for eval",
        "split_seed": str(rule.seed),
        "split_eval_fraction": f"{rule.eval_fraction:g}",
    }
    if data is not None and data.source_sha256:
        tags["split_source_sha256"] = data.source_sha256
    return tags


def production_version(reg: Registry, name: str) -> ModelVersion | None:
    """The version now in production; None when there is none, or the model is not registered yet."""
    try:
        return reg.get(f"{name}@production")
    except (AliasNotFound, ModelNotFound):
        return None


def run_gates(
    reg: Registry,
    config: PipelineConfig,
    version: ModelVersion,
    data: PipelineData,
    preds: dict[str, np.ndarray],
    data_gate: GateResult,
    champion: ModelVersion | None,
    actor: str,
) -> GateReport:
    """Run metric, fairness and champion gates and attach every result as evidence."""
    y = data.eval[config.target]
    pos = _pos(data)
    results = [data_gate]
    for name, bound in config.gates.metrics.items():
        results.append(
            metric_gate(
                y, training.metric_input(preds, name), name, min=bound.min, max=bound.max, pos_label=pos
            )
        )
    if config.gates.fairness is not None:  # config load guarantees sensitive_features with it
        spec = config.gates.fairness
        results.append(
            fairness_gate(
                y,
                preds["pred"],
                data.eval[config.sensitive_features],
                max_dp_diff=spec.max_dp_diff,
                max_eo_diff=spec.max_eo_diff,
                min_group_size=spec.min_group_size,
                pos_label=pos,
            )
        )
    if config.gates.champion is not None:
        spec = config.gates.champion
        challenger_score = score(y, training.metric_input(preds, spec.metric), spec.metric, pos_label=pos)
        champion_score = None
        if champion is not None:
            old = reg.load_model(f"{champion.model}/{champion.version}")
            features = [c.name for c in champion.input_schema] or feature_columns(config, data.eval)
            old_preds = training.predictions(
                old, data.eval[features], config.task, positive=data.positive_label
            )
            champion_score = score(
                y, training.metric_input(old_preds, spec.metric), spec.metric, pos_label=pos
            )
        results.append(champion_gate(challenger_score, champion_score, spec.margin, metric=spec.metric))
    for r in results:
        details = {**r.details, "message": r.message, "duration": r.duration}
        reg.add_evidence(
            version.model,
            version.version,
            gate=r.name,
            passed=r.passed,
            value=r.value,
            threshold=r.threshold,
            details=details,
            actor=actor,
        )
    return GateReport(results=results)


def write_card(name: str, version: int, markdown: str) -> Path:
    """Write the model card under ``.govflow/cards`` (or ``GOVFLOW_CARDS``), returning its path."""
    folder = Path(os.environ.get("GOVFLOW_CARDS", ".govflow/cards"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-v{version}.md"
    path.write_text(markdown, encoding="utf-8")
    return path


def reference_schema(
    champion: ModelVersion | None, data: PipelineData, config: PipelineConfig
) -> dict[str, str] | None:
    """Column types the training data is held to: the production model's inputs, else the reference file's."""
    if champion is not None and champion.input_schema:
        return {c.name: c.dtype for c in champion.input_schema}
    if config.data.reference is not None:
        return {str(c): str(t) for c, t in data.reference.dtypes.items()}
    return None


def gate_report(v: ModelVersion) -> GateReport:
    """The gate report rebuilt from the version's evidence (the latest result per gate)."""
    latest: dict[str, GateResult] = {}
    for e in v.evidence:
        if e.gate.startswith("monitor."):
            continue
        details = dict(e.details)
        message = str(details.pop("message", ""))
        duration = details.pop("duration", 0.0)
        latest[e.gate] = GateResult(
            name=e.gate,
            passed=e.passed,
            metric=str(details.get("metric", e.gate)),
            value=e.value,
            threshold=e.threshold,
            details=details,
            duration=float(duration) if isinstance(duration, int | float) else 0.0,
            message=message,
        )
    return GateReport(results=list(latest.values()))


def run_version(reg: Registry, name: str, run: RunRef) -> ModelVersion | None:
    """The version the orchestrator run ``run`` (its id and flow) registered, if any: a rerun
    must not register twice."""
    try:
        recent = reg.versions(name, limit=100)
    except NotFound:
        return None
    for v in recent:
        if v.lineage.run.flow_run_id == run.flow_run_id and v.lineage.run.flow_name == run.flow_name:
            return reg.get_version(name, v.version)
    return None
