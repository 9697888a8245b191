"""rollback: registry rollback → deploy the restored version → emit ``rolled-back``."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from deployments.targets import make_target
from flows import events
from flows.config import PipelineConfig
from flows.steps import open_registry
from registry.registry import Registry


@flow(name="rollback", log_prints=True)
def rollback(
    model_name: str, reason: str, config_path: str | None = None, expected_version: int | None = None
) -> dict[str, Any]:
    """Roll ``model_name`` back to the last approved version and deploy it.

    With ``config_path`` the registry and deploy target come from the pipeline config; without
    it, from the GOVFLOW_* environment, and nothing is deployed. With ``expected_version`` (the
    version an event was about) the rollback is refused if production has moved on since.
    """
    log = get_run_logger()
    config = PipelineConfig.load(config_path) if config_path else None
    reg = open_registry(config) if config else Registry()
    actor = reg.whoami()
    result = reg.rollback(model_name, reason=reason, actor=actor, expected_version=expected_version)
    out: dict[str, Any] = result.model_dump(mode="json")
    if config is not None:
        deployed = make_target(config.deploy).deploy(reg, model_name, result.restored, actor=actor)
        out["deployed"] = deployed.model_dump(mode="json")
        events.emit(
            "deployed",
            model_name,
            result.restored,
            actor,
            target=deployed.target,
            location=deployed.location,
            sha256=deployed.sha256,
        )
    events.emit(
        "rolled-back",
        model_name,
        result.restored,
        actor,
        from_version=result.demoted,
        to_version=result.restored,
        reason=reason,
    )
    log.info("rolled %s back from %s to %s: %s", model_name, result.demoted, result.restored, reason)
    reg.close()
    return out
