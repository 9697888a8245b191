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

from checks.types import plain_value
from flows import pipeline
from flows.config import PipelineConfig
from flows.data import PipelineData, load
from flows.preflight import target_positive
from registry import serialization
from registry.config import resolve_actor
from registry.entities import ModelVersion, RunRef
from registry.errors import InvalidInput
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
        """Lineage's run: the run id (a digest of it past 64 characters, so two never collide)."""
        run_id = self.run_id
        if len(run_id) > 64:
            run_id = "sha256:" + hashlib.sha256(run_id.encode()).hexdigest()[:57]
        return RunRef(flow_run_id=run_id, flow_name=f"airflow:{self.dag_id}"[:256])

    def scratch(self) -> Path:
        """A folder of this run's own for the trained model (GOVFLOW_AIRFLOW_SCRATCH, else tmp)."""
        root = Path(os.environ.get("GOVFLOW_AIRFLOW_SCRATCH") or Path(tempfile.gettempdir()) / "govflow-airflow")
        name = f"{self.dag_id}__{self.run_id}"
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = root / safe
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder


def config_digest(config_path: str) -> str:
    return hashlib.sha256(Path(config_path).read_bytes()).hexdigest()


def pinned_config(config_path: str, pinned: str | None = None) -> PipelineConfig:
    """The config; with ``pinned``, refused if the file changed since the validate stage read it."""
    if pinned is not None and config_digest(config_path) != pinned:
        raise InvalidInput(
            f"config: {config_path} changed since the validate stage read it; rerun the DAG", field="config"
        )
    return PipelineConfig.load(config_path)


def open_config(config_path: str, pinned: str | None = None) -> tuple[PipelineConfig, Registry]:
    """The (pinned) config and its registry."""
    config = pinned_config(config_path, pinned)
    return config, pipeline.open_registry(config)


def own_version(reg: Registry, run: RunInfo, registered: dict[str, Any]) -> ModelVersion:
    """The version this run registered; refused if what was handed on names another run's."""
    v = reg.get_version(registered["model"], registered["version"])
    if (v.lineage.run.flow_run_id, v.lineage.run.flow_name) != (run.ref().flow_run_id, run.ref().flow_name):
        raise InvalidInput(f"version: {v.ref} was not registered by Airflow run {run.run_id}", field="version")
    return v


def _digests(data: PipelineData) -> dict[str, str | None]:
    return {f"{d.role.value}:{d.uri}": d.sha256 for d in data.datasets}


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
    pinned = config_digest(config_path)
    config, reg = open_config(config_path)
    try:
        data = load(config)
        live = pipeline.production_version(reg, config.model_name)
        target_positive(config, data.train)
        gate, positive = pipeline.validate_data(
            config, data, pipeline.reference_schema(live, data, config)
        )
        return {
            "passed": gate.passed,
            "gate": gate.model_dump(mode="json"),
            "positive_label": plain_value(positive),
            "digests": _digests(data),
            "config_sha256": pinned,
        }
    finally:
        reg.close()


def train(config_path: str, run: RunInfo, validated: dict[str, Any]) -> dict[str, Any]:
    """Fit the estimator; the model goes to the run's scratch folder as skops."""
    config = pinned_config(config_path, validated["config_sha256"])
    model = pipeline.train_model(config, _data(config, validated))
    folder = run.scratch()
    staged = folder / f".model-{os.getpid()}.skops"
    serialization.save(model, staged)
    body = staged.read_bytes()
    staged.unlink()
    path = folder / "model.skops"
    # Written from the bytes hashed, so nothing can swap the file between writing and hashing.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    return {"path": str(path), "sha256": hashlib.sha256(body).hexdigest()}


def _model(reg: Registry, trained: dict[str, Any]) -> Any:
    """The trained model, loaded only if the scratch file is the one the train stage wrote."""
    path = Path(trained["path"])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != trained["sha256"]:
        raise InvalidInput(f"model: {path} changed since the train stage wrote it; rerun the DAG", field="model")
    return serialization.load(path, serialization.SKOPS, policy=reg.policy)


def evaluate(config_path: str, validated: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """Score the model on the eval rows for every metric the gates name."""
    config, reg = open_config(config_path, validated["config_sha256"])
    try:
        metrics, _ = pipeline.evaluate(config, _model(reg, trained), _data(config, validated))
        return {"metrics": metrics}
    finally:
        reg.close()


def register(
    config_path: str, run: RunInfo, validated: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any]
) -> dict[str, Any]:
    """Register the version under the registrant; a retried task finds the one it registered."""
    config, reg = open_config(config_path, validated["config_sha256"])
    try:
        v = pipeline.run_version(reg, config.model_name, run.ref())
        if v is not None and v.registered_by != run.registrant:
            v = None  # the same run id under another registrant is another run
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
    """Run every gate on the registered artifact, keep the results as evidence, stage on a pass.

    Nothing handed on by XCom is trusted here: the data gate runs again and the model scored is
    the one in the registry. A version already gated (a cleared, rerun task) keeps its evidence
    and is not staged again once it has been decided on.
    """
    config, reg = open_config(config_path, validated["config_sha256"])
    try:
        v = own_version(reg, run, registered)
        if any(not e.gate.startswith("monitor.") for e in v.evidence):
            report = pipeline.gate_report(v)
        else:
            data = _data(config, validated)
            live = pipeline.production_version(reg, v.model)
            data_gate, positive = pipeline.validate_data(
                config, data, pipeline.reference_schema(live, data, config)
            )
            data = replace(data, positive_label=positive)
            _, preds = pipeline.evaluate(config, reg.load_model(v.ref), data)
            report = pipeline.run_gates(reg, config, v, data, preds, data_gate, live, v.registered_by)
        now = reg.get_version(v.model, v.version)
        if report.passed and now.stage == Stage.DEVELOPMENT and not now.approvals:
            reg.transition(v.model, v.version, Stage.STAGING, actor=v.registered_by, reason="gates passed")
        failed = [r.name for r in report.failed]
        return {
            "passed": report.passed,
            "failed": failed,
            "reason": "all gates passed" if report.passed else "gates failed: " + ", ".join(failed),
        }
    finally:
        reg.close()
