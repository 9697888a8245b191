"""rollback: drift acts once per episode; a manual rollback rolls back. Deploy what was restored.

From a drift event (``expected_version`` given) the decision is ``registry.episodes.handle_drift``:
rolled back, ignored or skipped, each a named Completed state (``RolledBack``, ``Ignored``,
``RollbackSkipped``), never a Failed run. Without ``expected_version`` (``govflow run rollback``)
it rolls back as asked and a refusal is the run's one-line failure.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State

from deployments.targets import make_target
from flows import events
from flows.config import PipelineConfig
from flows.outcomes import finish, refused
from flows.steps import open_registry
from registry.episodes import handle_drift
from registry.errors import GovflowError
from registry.registry import Registry


@flow(name="rollback", log_prints=True)
def rollback(
    model_name: str, reason: str, config_path: str | None = None, expected_version: int | None = None
) -> State:
    """Roll ``model_name`` back to the last approved version and deploy it.

    With ``config_path`` the registry and deploy target come from the pipeline config; without
    it (or with ``""``, a trigger templating a missing field), from the GOVFLOW_* environment, and
    nothing is deployed. With ``expected_version`` (the version a drift event was about) the
    episode rule decides: roll back once, else ignore or skip.
    """
    config_path = config_path or None
    try:
        return finish(_run(model_name, reason, config_path, expected_version))
    except GovflowError as exc:
        get_run_logger().error("rollback of %s refused: %s", model_name, exc)
        return refused(exc)


def _run(
    model_name: str, reason: str, config_path: str | None, expected_version: int | None
) -> dict[str, Any]:
    log = get_run_logger()
    config = PipelineConfig.load(config_path) if config_path else None
    reg = open_registry(config) if config else Registry()
    try:
        actor = reg.whoami()
        if expected_version is None:
            result = reg.rollback(model_name, reason=reason, actor=actor)
            out: dict[str, Any] = {
                "outcome": "rolled-back",
                "model": model_name,
                "version": result.demoted,
                "production": result.demoted,
                "restored": result.restored,
                "demoted": result.demoted,
                "reason": f"rolled {model_name} back from version {result.demoted} to {result.restored}: {reason}",
                "actor": result.actor,
                "at": result.at.isoformat(),
            }
        else:
            decided = handle_drift(reg, model_name, expected_version, reason=reason, actor=actor)
            out = {"outcome": decided.action, **decided.model_dump(mode="json", exclude={"action"})}
        out["config_path"] = config_path
        if out["outcome"] == "rolled-back":
            _deployed(reg, config, out, actor, reason)
        elif out["outcome"] == "ignored":
            events.emit(
                "drift-ignored",
                model_name,
                expected_version,
                actor,
                production=out["production"],
                reason=out["reason"],
            )
        else:
            # The retrain deployment's trigger templates config_path; "" means none.
            events.emit(
                "rollback-skipped",
                model_name,
                expected_version,
                actor,
                reason=out["reason"],
                config_path=config_path or "",
            )
        log.info("%s", out["reason"])
        return out
    finally:
        reg.close()


def _deployed(reg: Any, config: PipelineConfig | None, out: dict[str, Any], actor: str, reason: str) -> None:
    """Deploy the restored version through the config's target (if any); emit the events."""
    model, restored = out["model"], out["restored"]
    if config is not None:
        deployed = make_target(config.deploy).deploy(reg, model, restored, actor=actor)
        out["deployed"] = deployed.model_dump(mode="json")
        events.emit(
            "deployed",
            model,
            restored,
            actor,
            target=deployed.target,
            location=deployed.location,
            sha256=deployed.sha256,
        )
    events.emit(
        "rolled-back", model, restored, actor, from_version=out["demoted"], to_version=restored, reason=reason
    )
