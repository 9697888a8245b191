"""Lifecycle stages and the legal-transition graph."""

from __future__ import annotations

from enum import StrEnum

from registry.errors import IllegalTransition, InvalidInput


class Stage(StrEnum):
    """Where a version is in its lifecycle."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


# Production is entered only from staging; rollback is the one audited exception.
TRANSITIONS: dict[Stage, tuple[Stage, ...]] = {
    Stage.DEVELOPMENT: (Stage.STAGING, Stage.ARCHIVED),
    Stage.STAGING: (Stage.PRODUCTION, Stage.DEVELOPMENT, Stage.ARCHIVED),
    Stage.PRODUCTION: (Stage.ARCHIVED, Stage.STAGING),
    Stage.ARCHIVED: (Stage.STAGING, Stage.DEVELOPMENT),
}


def parse_stage(value: str | Stage) -> Stage:
    """Parse a stage name; refuse anything outside the four stages."""
    try:
        return Stage(str(value).lower())
    except ValueError:
        allowed = ", ".join(s.value for s in Stage)
        raise InvalidInput(f"stage: {value!r} is not one of {allowed}", field="stage") from None


def check_transition(current: Stage, target: Stage, *, model: str, version: int) -> None:
    """Refuse a move that is not an edge of the graph, naming the allowed moves."""
    if target in TRANSITIONS[current]:
        return
    allowed = ", ".join(s.value for s in TRANSITIONS[current])
    if current == target:
        msg = f"{model}/{version} is already in {target.value}"
    else:
        msg = (
            f"{model}/{version}: {current.value} -> {target.value} is not allowed; "
            f"from {current.value} it may move to {allowed}"
        )
    raise IllegalTransition(msg, model=model, version=version)
