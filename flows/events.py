"""Prefect events for registry changes, named as in the design: ``govflow.model.<what>``."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event
from prefect.runtime import flow_run

EVENTS = frozenset(
    {
        "registered",
        "promoted",
        "rejected",
        "rolled-back",
        "deployed",
        "drift-detected",
        "approval-requested",
        "rollback-skipped",  # drift found nothing approved to restore (carries config_path for retrain)
        "drift-ignored",  # drift on a version not in production, or in an episode already handled
    }
)


def resource_id(model: str) -> str:
    """The resource every govflow event about ``model`` is about."""
    return f"govflow.model.{model}"


def emit(what: str, model: str, version: int | None, actor: str, **payload: Any) -> None:
    """Emit ``govflow.model.<what>`` with model, version and actor in the payload.

    The current flow run, when there is one, is attached as a related resource.
    """
    if what not in EVENTS:
        raise ValueError(f"unknown govflow event {what!r}")
    related = []
    run_id = flow_run.get_id()
    if run_id:
        related.append(
            {"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}
        )
    emit_event(
        event=f"govflow.model.{what}",
        resource={"prefect.resource.id": resource_id(model), "prefect.resource.name": model},
        related=related,
        payload={"model": model, "version": version, "actor": actor, **payload},
    )
