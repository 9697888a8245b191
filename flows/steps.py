"""Prefect tasks shared by the flows: the stages of ``flows.pipeline`` as tasks."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows import pipeline
from flows.config import PipelineConfig
from flows.data import PipelineData
from flows.pipeline import open_registry, production_version, split_tags, write_card
from registry.entities import ModelVersion, RunRef
from registry.registry import Registry

__all__ = [
    "evaluate",
    "open_registry",
    "production_version",
    "register_version",
    "run_gates",
    "split_tags",
    "train_model",
    "validate_data",
    "write_card",
]

validate_data = task(name="validate-data", cache_policy=NO_CACHE)(pipeline.validate_data)
train_model = task(name="train", cache_policy=NO_CACHE)(pipeline.train_model)
evaluate = task(name="evaluate", cache_policy=NO_CACHE)(pipeline.evaluate)
run_gates = task(name="gates", cache_policy=NO_CACHE)(pipeline.run_gates)


@task(name="register", cache_policy=NO_CACHE)
def register_version(
    reg: Registry,
    config: PipelineConfig,
    model: Any,
    data: PipelineData,
    metrics: dict[str, float],
    actor: str,
) -> ModelVersion:
    """Register the model; its lineage names this flow run (how a resumed run finds it again)."""
    run_id = flow_run.get_id()
    run = RunRef(flow_run_id=str(run_id) if run_id else None, flow_name=flow_run.get_flow_name())
    return pipeline.register_version(reg, config, model, data, metrics, actor, run)

