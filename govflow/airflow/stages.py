"""The retrain stages as one Airflow task each sees them: JSON in, JSON out, no Airflow import.

Every stage calls the same ``flows.pipeline`` functions as the Prefect flow. Airflow runs each
task in its own process, so what one stage hands the next goes through XCom as JSON; the trained
model goes through a scratch file in the safe skops format, checked against the digest the
train stage reported before it is loaded again.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from checks.result import GateResult
from flows import pipeline
from flows.config import PipelineConfig
from flows.data import PipelineData, load
from flows.preflight import target_positive
from registry import serialization
from registry.config import resolve_actor
from registry.entities import ModelVersion, RunRef
from registry.errors import InvalidInput, ModelNotFound
from registry.registry import Registry
from registry.stages import Stage

ORCHESTRATOR = "airflow"


@dataclass(frozen=True)
class RunInfo:
    """The Airflow run a stage belongs to."""

    dag_id: str
    run_id: str
    triggered_by: str | None = None  # the Airflow user who started the run, when a person did

    @classmethod
    def from_context(cls, context: Any) -> RunInfo:
        dag_run = context["dag_run"]
        user = getattr(dag_run, "triggering_user_name", None)
        return cls(dag_id=dag_run.dag_id, run_id=dag_run.run_id, triggered_by=user or None)

    @property
    def registrant(self) -> str:
        """Who registers the version: the user who triggered the run, else the pipeline's actor."""
        return self.triggered_by or resolve_actor(None)

    def ref(self) -> RunRef:
        return RunRef(flow_run_id=self.run_id[:64], flow_name=f"airflow:{self.dag_id}"[:256])

    def scratch(self) -> Path:
        """A folder of this run's own for the trained model (GOVFLOW_AIRFLOW_SCRATCH, else tmp)."""
        root = Path(os.environ.get("GOVFLOW_AIRFLOW_SCRATCH") or Path(tempfile.gettempdir()) / "govflow-airflow")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.dag_id}__{self.run_id}")
        folder = root / safe
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def open_config(config_path: str) -> tuple[PipelineConfig, Registry]:
    config = PipelineConfig.load(config_path)
    return config, pipeline.open_registry(config)


def champion(reg: Registry, name: str) -> ModelVersion | None:
    """The version in production, None before the first promotion."""
    try:
        return pipeline.production_version(reg, name)
    except ModelNotFound:
        return None  # the first retrain of this model


def _digests(data: PipelineData) -> dict[str, str | None]:
    return {f"{d.role.value}:{d.uri}": d.sha256 for d in data.datasets}


def _plain(value: Any) -> Any:
    """A label as JSON can carry it (numpy scalars become Python ones)."""
    return value.item() if hasattr(value, "item") else value


def _data(config: PipelineConfig, validated: dict[str, Any]) -> PipelineData:
    """The data the validate stage passed, refused if any file changed since."""
    data = load(config)
    now = _digests(data)
    if now != validated["digests"]:
        changed = sorted(k for k in now.keys() | validated["digests"].keys() if now.get(k) != validated["digests"].get(k))
        raise InvalidInput(
            f"data: {', '.join(changed)} changed since the validate stage checked it; rerun the DAG",
            field="data",
        )
    return replace(data, positive_label=validated["positive_label"])


def validate(config_path: str) -> dict[str, Any]:
    """The data gate; a failure stops the run before training, with nothing registered."""
    config, reg = open_config(config_path)
    try:
        data = load(config)
        live = champion(reg, config.model_name)
        target_positive(config, data.train)
        gate, positive = pipeline.validate_data(
            config, data, pipeline.reference_schema(live, data, config)
        )
        return {
            "passed": gate.passed,
            "gate": gate.model_dump(mode="json"),
            "positive_label": _plain(positive),
            "digests": _digests(data),
        }
    finally:
        reg.close()


def train(config_path: str, run: RunInfo, validated: dict[str, Any]) -> dict[str, Any]:
    """Fit the estimator; the model goes to the run's scratch folder as skops."""
    config = PipelineConfig.load(config_path)
    model = pipeline.train_model(config, _data(config, validated))
    path = run.scratch() / "model.skops"
    serialization.save(model, path)
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _model(reg: Registry, trained: dict[str, Any]) -> Any:
    """The trained model, loaded only if the scratch file is the one the train stage wrote."""
    path = Path(trained["path"])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != trained["sha256"]:
        raise InvalidInput(f"model: {path} changed since the train stage wrote it; rerun the DAG", field="model")
    return serialization.load(path, serialization.SKOPS, policy=reg.policy)


def evaluate(config_path: str, validated: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """Score the model on the eval rows for every metric the gates name."""
    config, reg = open_config(config_path)
    try:
        metrics, _ = pipeline.evaluate(config, _model(reg, trained), _data(config, validated))
        return {"metrics": metrics}
    finally:
        reg.close()


def register(
    config_path: str, run: RunInfo, validated: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any]
) -> dict[str, Any]:
    """Register the version under the registrant; a retried task finds the one it registered."""
    config, reg = open_config(config_path)
    try:
        v = pipeline.run_version(reg, config.model_name, run.ref().flow_run_id or "")
        if v is None:
            data = _data(config, validated)
            v = pipeline.register_version(
                reg, config, _model(reg, trained), data, evaluated["metrics"], run.registrant, run.ref()
            )
        return {"model": v.model, "version": v.version, "registered_by": v.registered_by}
    finally:
        reg.close()


def gates(
    config_path: str,
    run: RunInfo,
    validated: dict[str, Any],
    trained: dict[str, Any],
    registered: dict[str, Any],
) -> dict[str, Any]:
    """Run every gate, keep the results as evidence, and stage the version when all pass."""
    config, reg = open_config(config_path)
    try:
        v = reg.get_version(registered["model"], registered["version"])
        data = _data(config, validated)
        _, preds = pipeline.evaluate(config, _model(reg, trained), data)
        live = champion(reg, v.model)
        data_gate = GateResult.model_validate(validated["gate"])
        report = pipeline.run_gates(reg, config, v, data, preds, data_gate, live, v.registered_by)
        if report.passed and reg.get_version(v.model, v.version).stage == Stage.DEVELOPMENT:
            reg.transition(v.model, v.version, Stage.STAGING, actor=v.registered_by, reason="gates passed")
        failed = [r.name for r in report.failed]
        return {
            "passed": report.passed,
            "failed": failed,
            "reason": "all gates passed" if report.passed else "gates failed: " + ", ".join(failed),
        }
    finally:
        reg.close()
