"""Versions waiting for a human decision, and settling them when the wait ends without one.

A retrain that waits for approval records ``run.waiting``: which orchestrator run waits and until
when. When that run ends without deciding (cancelled, crashed, timed out, its worker gone), a
reconcile settles the version from the registry alone: the approvals the policy needs promote
it, anything less rejects it. Both are audited like any decision, so no version stays in staging
forever. Only the registry's public methods are used, so this works embedded and through the
registry server, for any orchestrator.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from registry.entities import Decision, ModelVersion
from registry.errors import ApprovalRequired, GateFailed, InvalidInput, NotServable
from registry.stages import Stage
from registry.validate import same_actor

WAITING = "run.waiting"


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


class Waiting(BaseModel):
    """One version's wait for approval, as its run recorded it."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="Model name.")
    version: int = Field(description="The version waiting in staging.")
    orchestrator: str = Field(description="What runs the wait: prefect, airflow…")
    run_id: str | None = Field(description="The waiting run's id in that orchestrator.")
    deadline: datetime = Field(description="When the wait times out, UTC.")
    timeout: int = Field(description="The wait's length in seconds.")
    seq: int = Field(description="Audit seq of the record.")

    def expired(self, at: datetime | None = None) -> bool:
        """Whether the deadline has passed."""
        return (at or now()) >= self.deadline


class Settled(BaseModel):
    """What settling a waiting version did."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="Model name.")
    version: int = Field(description="Version number.")
    outcome: Literal["promoted", "rejected", "untouched"] = Field(description="What happened to it.")
    reason: str = Field(description="Why, in one line.")
    approvers: list[str] = Field(default_factory=list, description="Who approved, when promoted.")


def _parse(event: Any) -> Waiting | None:
    p = event.payload or {}
    try:
        return Waiting(
            model=event.model,
            version=event.version,
            orchestrator=str(p.get("orchestrator") or "unknown"),
            run_id=p.get("run_id"),
            deadline=datetime.fromisoformat(p["deadline"]),
            timeout=int(p.get("timeout") or 0),
            seq=event.seq,
        )
    except (KeyError, TypeError, ValueError):
        return None  # not one we wrote; a later record replaces it


def mark_waiting(
    reg: Any,
    version: ModelVersion,
    *,
    run_id: str | None,
    timeout: int,
    orchestrator: str = "prefect",
    actor: str | None = None,
) -> Waiting:
    """Record that ``run_id`` waits for a decision on ``version``; return the wait.

    Idempotent for a run: a run that starts again from the top (a resumed suspension) keeps the
    deadline it recorded first, so a resume never extends the wait.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise InvalidInput(
            f"timeout: {timeout!r} must be a positive whole number of seconds", field="timeout"
        )
    current = current_wait(reg, version)
    if current is not None and current.run_id == run_id:
        return current
    deadline = now() + timedelta(seconds=timeout)
    event = reg.record(
        WAITING,
        model=version.model,
        version=version.version,
        payload={
            "orchestrator": orchestrator,
            "run_id": run_id,
            "deadline": deadline.isoformat(),
            "timeout": timeout,
        },
        actor=actor,
    )
    parsed = _parse(event)
    assert parsed is not None
    return parsed


def _counts(event: Any, version: ModelVersion) -> bool:
    """Whether ``event`` is a wait for ``version``'s current review, recorded by its registrant.

    Only the identity that registered the version (the pipeline whose run waits) may say that a
    run waits on it: a wait recorded by anyone else (an earlier deadline, a finished run's id, to
    get the version rejected early) is ignored.
    """
    return (
        event.action == WAITING
        and event.version == version.version
        and event.at >= version.stage_changed_at
        and same_actor(event.actor, version.registered_by)
    )


def current_wait(reg: Any, version: ModelVersion) -> Waiting | None:
    """The wait recorded for ``version`` since it last entered staging, if any."""
    if version.stage != Stage.STAGING:
        return None
    found = None
    for event in reg.audit_log(model=version.model):
        if _counts(event, version):
            found = _parse(event) or found
    return found


def waiting(reg: Any, model: str | None = None) -> list[tuple[ModelVersion, Waiting | None]]:
    """Every version in staging (of ``model``, or of all models) with its recorded wait, if any."""
    names = [model] if model is not None else [m.name for m in reg.models()]
    out: list[tuple[ModelVersion, Waiting | None]] = []
    for name in names:
        staged = list(reg.versions(name, stage=Stage.STAGING, with_decisions=True))
        if not staged:
            continue
        events = [e for e in reg.audit_log(model=name) if e.action == WAITING]
        for v in staged:
            wait = None
            for e in events:
                if _counts(e, v):
                    wait = _parse(e) or wait
            out.append((v, wait))
    return out


def settle(reg: Any, model: str, version: int, *, reason: str, actor: str | None = None) -> Settled:
    """Decide a staged version whose wait ended: promote on the registry's approvals, else reject.

    A version no longer in staging is left alone. A refusal other than missing approvals, a
    failing gate or a version that could not be served (say, the caller may not promote) is
    raised, not turned into a rejection.
    """
    v = reg.get_version(model, version)
    if v.stage != Stage.STAGING:
        return Settled(model=model, version=version, outcome="untouched", reason=f"already {v.stage.value}")
    # Read before promoting: entering production starts a new review round.
    given = [a.actor for a in v.approvals if a.current and a.decision == Decision.APPROVE]
    try:
        reg.transition(
            model, version, Stage.PRODUCTION, actor=actor, reason=f"{reason}; approved in the registry"
        )
        return Settled(
            model=model,
            version=version,
            outcome="promoted",
            reason=f"{reason}; the registry held the approvals the policy needs",
            approvers=given,
        )
    except (ApprovalRequired, GateFailed, NotServable) as exc:
        reg.reject(model, version, reason=f"{reason} ({exc})", actor=actor)
        return Settled(model=model, version=version, outcome="rejected", reason=f"{reason} ({exc})")
