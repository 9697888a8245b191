"""The Airflow monitor and rollback stages (no Airflow import).

The monitor runs the same check as the Prefect monitor (``flows.watch.check``). The rollback
follows the same once-per-episode rule (``registry.episodes.handle_drift``), and acts only on
drift the registry itself holds evidence of: an asset event is a request that anyone allowed to
post asset events could send, so the event names the version and the registry's own
``monitor.drift`` evidence decides.
"""

from __future__ import annotations

import logging
from typing import Any

from deployments.targets import make_target
from flows import pipeline, watch
from flows.config import PipelineConfig
from registry.entities import ModelVersion
from registry.episodes import IGNORED, handle_drift
from registry.errors import InvalidInput
from registry.registry import Registry
from registry.stages import Stage
from registry.validate import check_version

log = logging.getLogger("govflow.airflow")


def monitor(config_path: str, data_path: str | None = None) -> dict[str, Any]:
    """Score drift on ``data_path`` (else the config's ``monitor.source``); evidence is recorded."""
    config = PipelineConfig.load(config_path)
    if data_path is None and config.monitor.source is None:
        raise InvalidInput(
            "monitor.source: no data to monitor: give data_path or set monitor.source in the config",
            field="monitor.source",
        )
    reg = pipeline.open_registry(config)
    try:
        out, _ = watch.check(reg, config, data_path, log)
        out["config_path"] = config_path
        return out
    finally:
        reg.close()


def event_extra(found: dict[str, Any], run_id: str | None = None, triggered_by: str | None = None) -> dict[str, Any]:
    """What the drift asset event carries: model, version, and why, naming the monitor run,
    who started it and the data it read (a person can start the monitor on data of their choice)."""
    origin = ", ".join(
        part
        for part in (
            f"monitor run {run_id}" if run_id else "",
            f"triggered by {triggered_by}" if triggered_by else "",
            f"data {found.get('data')}" if found.get("data") else "",
        )
        if part
    )
    why = f"drift detected by the monitor: {found.get('message') or found.get('reason')}"
    return {
        "model": found["model"],
        "version": found["version"],
        "reason": f"{why} ({origin})" if origin else why,
        "psi": found.get("psi"),
        "data": found.get("data"),
        "monitor_run": run_id,
        "triggered_by": triggered_by,
    }


def _drift_evidence(v: ModelVersion) -> bool:
    """Whether the registry holds an acting drift result on ``v`` since it entered production."""
    return any(
        e.gate == "monitor.drift" and not e.passed and e.at >= v.stage_changed_at for e in v.evidence
    )


def _one(reg: Registry, config: PipelineConfig, extra: dict[str, Any]) -> dict[str, Any]:
    model, version = extra.get("model"), extra.get("version")
    if model != config.model_name:
        raise InvalidInput(
            f"model: the drift event names {model!r}; this rollback DAG is for {config.model_name!r}",
            field="model",
        )
    check_version(version)
    reason = str(extra.get("reason") or "drift detected by the monitor")
    v = reg.get_version(model, version)
    if v.stage == Stage.PRODUCTION and not _drift_evidence(v):
        why = (
            f"drift event for {model}/{version} not acted on: the registry holds no failed "
            "monitor.drift evidence on it since it entered production"
        )
        reg.record(IGNORED, model=model, version=version, payload={"reason": why, "drift_reason": reason})
        return {"outcome": "ignored", "model": model, "version": version, "reason": why}
    decided = handle_drift(reg, model, version, reason=reason)
    out: dict[str, Any] = {"outcome": decided.action, **decided.model_dump(mode="json", exclude={"action"})}
    if decided.rolled_back:
        assert decided.restored is not None
        out["deployed"] = make_target(config.deploy).deploy(reg, model, decided.restored).model_dump(mode="json")
    return out


def rollback(config_path: str, extras: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Handle each drift event of an asset-triggered run, in order."""
    config = PipelineConfig.load(config_path)
    reg = pipeline.open_registry(config)
    try:
        return [_one(reg, config, dict(extra)) for extra in extras]
    finally:
        reg.close()
