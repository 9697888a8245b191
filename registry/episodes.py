"""Drift acts once per episode: what a drift event does to production, decided from the registry.

An *episode* is a model's production line from one promotion until the next: the promoted
version, and whatever a rollback restores in its place. Drift in an episode rolls back at most
once. After that (or after a rollback found nothing approved to restore) further drift events
in the same episode are ignored and audited, so an hourly monitor on still-drifted data neither
walks production back one version per hour nor fails every hour.

Only the Registry's public methods are used, so the rule holds the same embedded and through
``registry.remote.RemoteRegistry``; nothing here imports Prefect (other orchestrators call it too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from registry.audit import is_reserved
from registry.entities import AuditEvent
from registry.errors import AliasNotFound, InvalidInput, RollbackRefused
from registry.validate import check_name, check_text, check_version


def _action(preferred: str, fallback: str) -> str:
    # record() refuses the registry's own namespaces; should drift. become one, fall back to custom.
    return fallback if is_reserved(preferred) else preferred


IGNORED = _action("drift.ignored", "custom.drift_ignored")
SKIPPED = _action("drift.rollback_skipped", "custom.drift_rollback_skipped")
# Earlier records may carry either spelling; both mark the episode as handled.
SKIP_ACTIONS = frozenset({"drift.rollback_skipped", "custom.drift_rollback_skipped"})
PROMOTED = "version.promoted"
ROLLED_BACK = "model.rolled_back"
_FIRST_WINDOW = 256  # audit events read first when looking back for the episode's promotion

Action = Literal["rolled-back", "ignored", "skipped"]


class DriftOutcome(BaseModel):
    """What one drift event did, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action = Field(description="rolled-back, ignored or skipped.")
    model: str = Field(description="Model the drift event was about.")
    version: int = Field(description="Version the drift event was about.")
    production: int | None = Field(
        description="Version in production when the event was handled (before any rollback)."
    )
    restored: int | None = Field(
        default=None, description="Version put back into production; rolled-back only."
    )
    demoted: int | None = Field(
        default=None, description="Version taken out of production; rolled-back only."
    )
    reason: str = Field(description="Why this action: the rollback's reason, or why nothing was rolled back.")
    handled_at: datetime | None = Field(
        default=None,
        description="When the episode's one action (rollback or skip) happened, if it already had.",
    )

    @property
    def rolled_back(self) -> bool:
        """True when this event rolled production back."""
        return self.action == "rolled-back"


class Episode(BaseModel):
    """The current episode of a model, read from its audit trail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    promoted: AuditEvent | None = Field(description="The promotion that opened it; None if the log has none.")
    handled: AuditEvent | None = Field(description="Its first rollback or recorded rollback-skip, if any.")


def current_episode(reg: Any, model: str, production: int | None) -> Episode:
    """The episode ``model`` is in: its opening promotion and the action that handled it, if any.

    Reads the model's audit trail backwards in growing windows until the last promotion into
    production is inside (audit order is commit order, so no clock comparison is involved). A
    skip counts only for the version now in production: a skip leaves production where it was,
    so a record naming another version cannot close this episode.
    """
    limit = _FIRST_WINDOW
    while True:
        events = reg.audit_log(model=model, limit=limit)
        start = next((i for i in range(len(events) - 1, -1, -1) if events[i].action == PROMOTED), None)
        if start is not None or len(events) < limit:
            since = events[start + 1 :] if start is not None else events
            handled = next(
                (
                    e
                    for e in since
                    if e.action == ROLLED_BACK or (e.action in SKIP_ACTIONS and e.version == production)
                ),
                None,
            )
            return Episode(promoted=events[start] if start is not None else None, handled=handled)
        limit *= 4


def _production(reg: Any, model: str) -> int | None:
    try:
        return reg.resolve(f"{model}@production").version
    except AliasNotFound:
        return None


def _describe(event: AuditEvent) -> str:
    at = event.at.isoformat(timespec="seconds")
    if event.action == ROLLED_BACK:
        p = event.payload
        return f"{at} (rolled back from version {p.get('from_version')} to {p.get('to_version')} by {event.actor})"
    return f"{at} (rollback skipped: nothing approved to restore)"


def handle_drift(
    reg: Any, model: str, version: int, *, reason: str, actor: str | None = None
) -> DriftOutcome:
    """Act on drift detected on ``model/version``: roll back once per episode, else ignore or skip.

    - ``version`` not in production: ignored (audited as ``drift.ignored``).
    - The episode already had its rollback (drift or manual): ignored. After a recorded skip the
      rollback is tried again; still refused, the event is ignored.
    - Otherwise production is rolled back, guarded by ``expected_version=version``; if production
      moved meanwhile (a concurrent handler won) the event is ignored, and if nothing approved is
      left to restore it is skipped (audited as ``drift.rollback_skipped``, closing the episode).

    Refuses a bad name, version or reason, an unknown model, and an unknown version.
    """
    check_name(model, "model")
    check_version(version)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("reason: a drift event needs a reason", field="reason")
    check_text(reason, "reason")
    production = _production(reg, model)

    def ignore(why: str, handled: AuditEvent | None = None) -> DriftOutcome:
        note = {"reason": why, "drift_reason": reason, "production": production}
        reg.record(IGNORED, model=model, version=version, payload=note, actor=actor)
        return DriftOutcome(
            action="ignored",
            model=model,
            version=version,
            production=production,
            reason=why,
            handled_at=handled.at if handled else None,
        )

    if production != version:
        reg.resolve(f"{model}/{version}")  # a version the registry never had is refused, not audited
        now_in = f"version {production} is" if production is not None else "no version is"
        return ignore(f"drift on {model}/{version} ignored: it is not in production ({now_in})")
    episode = current_episode(reg, model, production)
    handled = episode.handled

    def already() -> DriftOutcome:
        assert handled is not None
        return ignore(f"drift on {model}/{version} ignored: episode already handled at {_describe(handled)}", handled)

    if handled is not None and handled.action == ROLLED_BACK:
        return already()
    # A recorded skip is only a note (anyone who may record events can write one): the rollback is
    # tried again, so a forged skip cannot keep a drifted version live when one may be restored.
    try:
        result = reg.rollback(model, reason=reason, actor=actor, expected_version=version)
    except RollbackRefused as exc:
        now = _production(reg, model)
        if now != version:  # a concurrent handler (or an operator) moved production first
            moved = f"version {now}" if now is not None else "no version"
            return ignore(f"drift on {model}/{version} ignored: production moved to {moved} meanwhile")
        if handled is not None:
            return already()
        why = f"drift on {model}/{version}: nothing approved to restore ({exc})"
        reg.record(
            SKIPPED,
            model=model,
            version=version,
            payload={"reason": why, "drift_reason": reason, "refusal": str(exc)},
            actor=actor,
        )
        return DriftOutcome(action="skipped", model=model, version=version, production=production, reason=why)
    return DriftOutcome(
        action="rolled-back",
        model=model,
        version=version,
        production=production,
        restored=result.restored,
        demoted=result.demoted,
        reason=f"rolled {model} back from version {result.demoted} to {result.restored}: {reason}",
    )
