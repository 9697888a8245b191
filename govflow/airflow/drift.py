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
from registry.entities import Evidence, ModelVersion
from registry.episodes import IGNORED, handle_drift
from registry.errors import GovflowError, InvalidInput
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


def event_extra(found: dict[str, Any]) -> dict[str, Any]:
    """What the drift asset event carries: the model and version drift acted on, and the data."""
    return {"model": found["model"], "version": found["version"], "psi": found.get("psi"), "data": found.get("data")}


def _drift_evidence(v: ModelVersion) -> Evidence | None:
    """The registry's latest acting drift result on ``v`` since it entered production, if any."""
    found = [e for e in v.evidence if e.gate == "monitor.drift" and not e.passed and e.at >= v.stage_changed_at]
    return found[-1] if found else None


def _one(reg: Registry, config: PipelineConfig, event: dict[str, Any], monitor_dag: str) -> dict[str, Any]:
    extra = dict(event.get("extra") or {})
    model, version = extra.get("model"), extra.get("version")
    if model != config.model_name:
        raise InvalidInput(
            f"model: the drift event names {model!r}; this rollback DAG is for {config.model_name!r}",
            field="model",
        )
    check_version(version)
    source = event.get("source_dag_id")
    if source != monitor_dag:
        why = (
            f"drift event for {model}/{version} not acted on: it did not come from {monitor_dag} "
            f"(source {source or 'none: posted by hand'})"
        )
        reg.record(IGNORED, model=model, version=version, payload={"reason": why, "event_source": source})
        return {"outcome": "ignored", "model": model, "version": version, "reason": why}
    v = reg.get_version(model, version)
    evidence = _drift_evidence(v) if v.stage == Stage.PRODUCTION else None
    if v.stage == Stage.PRODUCTION and evidence is None:
        why = (
            f"drift event for {model}/{version} not acted on: the registry holds no failed "
            "monitor.drift evidence on it since it entered production"
        )
        reg.record(IGNORED, model=model, version=version, payload={"reason": why, "event_source": source})
        return {"outcome": "ignored", "model": model, "version": version, "reason": why}
    # The reason comes from the registry's evidence and Airflow's own record of the source run.
    found = evidence.details.get("message") if evidence is not None else "drift event"
    data = evidence.details.get("data") if evidence is not None else None
    reason = f"drift found by {source} run {event.get('source_run_id')}: {found}" + (f" (data {data})" if data else "")
    decided = handle_drift(reg, model, version, reason=reason)
    out: dict[str, Any] = {"outcome": decided.action, **decided.model_dump(mode="json", exclude={"action"})}
    if decided.rolled_back:
        assert decided.restored is not None
        out["deployed"] = make_target(config.deploy).deploy(reg, model, decided.restored).model_dump(mode="json")
    return out


def rollback(config_path: str, events: list[dict[str, Any]], monitor_dag: str) -> list[dict[str, Any]]:
    """Handle each drift event of an asset-triggered run on its own, in order.

    ``events``: each with the event's ``extra`` and Airflow's ``source_dag_id`` and
    ``source_run_id``. A refused event does not stop the others; the refusals are raised at the
    end, in one line.
    """
    config = PipelineConfig.load(config_path)
    reg = pipeline.open_registry(config)
    done: list[dict[str, Any]] = []
    refused: list[str] = []
    try:
        for event in events:
            try:
                done.append(_one(reg, config, event, monitor_dag))
            except GovflowError as exc:
                refused.append(str(exc))
    finally:
        reg.close()
    if refused:
        handled = "; ".join(f"{d['outcome']} {d['model']}/{d['version']}" for d in done) or "none"
        raise InvalidInput(f"drift events refused: {' | '.join(refused)} (handled: {handled})", field="event")
    return done
