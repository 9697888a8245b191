"""Decision states over time: what each approval, rejection and waiver did when it took effect.

A decision is shown with the state it had when it settled, not with today's: the approval that
admitted a version to production is "counted at promotion", even though approvals later
expire and every stage change starts a new review round. How a version came to be (or stopped
being) in production is told the same way, rollbacks included.

Review rounds: every stage change starts a new round, and a decision records the round it was
taken in. So the round ``r`` of a version ends with its ``r``-th stage change after
registration, and that change is where its decisions settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry.entities import Approval, AuditEvent, Evidence, StageChange, Waiver
from registry.reports.reads import PackReads
from registry.stages import Stage

DEFAULT_VALID_FOR = 7 * 86_400  # the policy's default, for documents that predate the setting


def when(at: datetime | None) -> str:
    """A time as the pack prints it."""
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


def names(people: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(people) <= 1:
        return "".join(people)
    return ", ".join(people[:-1]) + " and " + people[-1]


class DecisionState(StrEnum):
    """What a decision did when it settled."""

    COUNTED = "counted"  # counted at the promotion (or stage entry) that ended its round
    NOT_COUNTED = "not counted"  # its round ended in that entry, without it
    LAPSED = "lapsed"  # its round ended without entering the stage it was for
    PENDING = "pending"  # its round is open: it counts toward the next entry
    EXPIRED = "expired"  # its round is open but it is older than the policy allows
    SENT_BACK = "sent back"  # a rejection that sent the version back to development
    RECORDED = "recorded"  # a rejection of a version that was not staged: nothing moved
    SUPERSEDED = "superseded"  # a waiver whose failed result a later result replaced


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DecisionEntry(Approval):
    """An approval or rejection with the state it had when it took effect."""

    state: DecisionState = Field(description="What the decision did when it settled.")
    state_note: str = Field(description="The state in words, e.g. 'counted at promotion on DATE'.")
    settled_at: datetime | None = Field(
        description="When it settled (the promotion, the move, the rejection); None while pending."
    )


class WaiverEntry(Waiver):
    """A waiver with the state it had when it took effect."""

    state: DecisionState = Field(description="counted, superseded or pending.")
    state_note: str = Field(description="The state in words.")
    settled_at: datetime | None = Field(description="The promotion it counted at; None otherwise.")


class GateEntry(Evidence):
    """One gate result kept on the version, marked when it is the one that counts."""

    latest: bool = Field(description="True for the latest result of its gate, the one that counts.")
    note: str | None = Field(
        default=None, description="Why a result stands as it does, when it needs saying."
    )


class ProductionSpell(_Frozen):
    """One stay of the version in production: how it entered, under which approval, how it left."""

    entered_at: datetime = Field(description="When it entered production, UTC.")
    how: str = Field(description="promote or rollback.")
    by: str = Field(description="Who promoted it, or who rolled back.")
    reason: str | None = Field(description="The promotion's or the rollback's reason.")
    approved_by: list[str] = Field(description="Approvers counted at the promotion it stands on.")
    approved_at: datetime | None = Field(
        description="That promotion (for a rollback: the version's last promotion before it)."
    )
    rolled_back_version: int | None = Field(description="For a rollback: the version it demoted.")
    left_at: datetime | None = Field(description="When it left production; None while there.")
    left_how: str | None = Field(description="How it left: superseded, rolled back, moved.")


class Standing(_Frozen):
    """Whether and why the version is in production."""

    summary: str = Field(description="One sentence: how the version stands in production.")
    spells: list[ProductionSpell] = Field(description="Every stay in production, oldest first.")


@dataclass(frozen=True)
class Timeline:
    """The decisions, waivers and gates of one version, each with its state."""

    decisions: list[DecisionEntry]
    waivers: list[WaiverEntry]
    gates: list[GateEntry]
    standing: Standing


def build_timeline(reads: PackReads, now: datetime) -> Timeline:
    """The states of ``reads.version``'s decisions as they settled, and its production standing."""
    moves = [c for c in reads.changes if c.kind != "register"]
    promotions = _events(reads, "version.promoted")
    rollbacks = _events(reads, "model.rolled_back")
    spells = _spells(reads, moves, promotions, rollbacks)
    v = reads.version
    return Timeline(
        decisions=[_decision(reads, a, moves, promotions, now) for a in v.approvals or []],
        waivers=[_waiver(w, v.evidence or [], moves) for w in v.waivers or []],
        gates=_gates(reads, spells, rollbacks),
        standing=Standing(summary=_summary(reads, spells), spells=spells),
    )


# --- approvals and rejections ---------------------------------------------------------------


def _decision(
    reads: PackReads,
    a: Approval,
    moves: list[StageChange],
    promotions: dict[datetime, AuditEvent],
    now: datetime,
) -> DecisionEntry:
    closing = moves[a.review_round] if 0 <= a.review_round < len(moves) else None
    if a.decision.value == "reject":
        state, note, at = _rejection(a, closing, moves)
    else:
        state, note, at = _approval(reads, a, closing, promotions, now)
    return DecisionEntry(**a.model_dump(), state=state, state_note=note, settled_at=at)


def _rejection(
    a: Approval, closing: StageChange | None, moves: list[StageChange]
) -> tuple[DecisionState, str, datetime | None]:
    if closing is not None and closing.kind == "reject" and closing.at == a.at:
        return DecisionState.SENT_BACK, f"sent the version back to development on {when(a.at)}", a.at
    stage = _stage_at(moves, a.at)
    where = f" while the version was in {stage.value}" if stage is not None else ""
    return DecisionState.RECORDED, f"recorded on {when(a.at)}{where}; nothing moved", a.at


def _approval(
    reads: PackReads,
    a: Approval,
    closing: StageChange | None,
    promotions: dict[datetime, AuditEvent],
    now: datetime,
) -> tuple[DecisionState, str, datetime | None]:
    typed = " (a name typed into a form, not authenticated)" if a.claimed_by else ""
    if closing is None:
        policy = reads.policy_now or {}
        expires = a.at + timedelta(seconds=_valid_for(policy))
        if now >= expires:
            return (
                DecisionState.EXPIRED,
                f"expired on {when(expires)} before the version entered {a.target_stage.value}",
                None,
            )
        note = f"counts toward entering {a.target_stage.value} until {when(expires)}{typed}"
        return DecisionState.PENDING, note, None
    if closing.to_stage != a.target_stage:
        how = f"the version moved to {closing.to_stage.value}"
        note = f"lapsed on {when(closing.at)}: {how} before it counted"
        return DecisionState.LAPSED, note, closing.at
    if a.target_stage != Stage.PRODUCTION or closing.kind != "promote":
        return (
            DecisionState.COUNTED,
            f"counted at entry to {a.target_stage.value} on {when(closing.at)}{typed}",
            closing.at,
        )
    promoted = promotions.get(closing.at)
    counted = promoted.payload.get("approved_by") if promoted is not None else None
    policy_then = reads.document(promoted.payload.get("policy_sha256")) if promoted is not None else None
    typed_ignored = bool(a.claimed_by and (policy_then or {}).get("authenticated_approvals"))
    # carol's typed claim and her authenticated approval share a name: only the second counted
    if not typed_ignored and (not isinstance(counted, list) or a.actor in counted):
        return DecisionState.COUNTED, f"counted at promotion on {when(closing.at)}{typed}", closing.at
    why = _not_counted_why(reads, a, closing, promoted)
    return DecisionState.NOT_COUNTED, f"not counted at the promotion on {when(closing.at)}{why}", closing.at


def _not_counted_why(reads: PackReads, a: Approval, closing: StageChange, promoted: Any) -> str:
    policy = reads.document(promoted.payload.get("policy_sha256")) or {}
    if a.claimed_by and policy.get("authenticated_approvals"):
        return ": a name typed into a form, which the policy does not count"
    if a.at < closing.at - timedelta(seconds=_valid_for(policy)):
        return ": it had expired"
    rule = (policy.get("stages") or {}).get(Stage.PRODUCTION.value) or {}
    if isinstance(rule.get("approvers"), list) and a.actor not in rule["approvers"]:
        return ": not on the policy's approver list"
    return ""


def _valid_for(policy: dict[str, Any]) -> int:
    value = policy.get("approval_valid_for")
    return value if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_VALID_FOR


# --- waivers ----------------------------------------------------------------------------------


def _waiver(w: Waiver, evidence: list[Evidence], moves: list[StageChange]) -> WaiverEntry:
    later = [e for e in evidence if e.gate == w.gate and e.at > w.evidence_at]
    promotion = next((m for m in moves if m.kind == "promote" and m.at > w.at), None)
    result = f"the failed {w.gate} result of {when(w.evidence_at)}"
    if promotion is not None:
        before = [e for e in later if e.at <= promotion.at]
        if not before:
            note = f"let {result} stand at the promotion on {when(promotion.at)}"
            return WaiverEntry(
                **w.model_dump(), state=DecisionState.COUNTED, state_note=note, settled_at=promotion.at
            )
        later = before
    if later:
        note = f"superseded: a {w.gate} result of {when(later[0].at)} replaced {result}"
        return WaiverEntry(
            **w.model_dump(), state=DecisionState.SUPERSEDED, state_note=note, settled_at=later[0].at
        )
    note = f"lets {result} stand at the next promotion"
    return WaiverEntry(**w.model_dump(), state=DecisionState.PENDING, state_note=note, settled_at=None)


# --- production ---------------------------------------------------------------------------------


def _events(reads: PackReads, action: str) -> dict[datetime, AuditEvent]:
    """The version's own events of ``action``, by time (a stage change and its event share it)."""
    v = reads.version.version
    return {e.at: e for e in reads.events if e.action == action and e.version == v}


def _spells(
    reads: PackReads,
    moves: list[StageChange],
    promotions: dict[datetime, AuditEvent],
    rollbacks: dict[datetime, AuditEvent],
) -> list[ProductionSpell]:
    spells: list[dict[str, Any]] = []
    approved_by: list[str] = []
    approved_at: datetime | None = None
    for m in moves:
        if m.to_stage == Stage.PRODUCTION:
            rolled = None
            if m.kind == "promote":
                counted = (promotions.get(m.at) or _NO_EVENT).payload.get("approved_by")
                approved_by = [str(x) for x in counted] if isinstance(counted, list) else []
                approved_at = m.at
            else:
                rolled = (rollbacks.get(m.at) or _NO_EVENT).payload.get("from_version")
            spells.append(
                {
                    "entered_at": m.at,
                    "how": "promote" if m.kind == "promote" else m.kind,
                    "by": m.actor,
                    "reason": m.reason,
                    "approved_by": approved_by,
                    "approved_at": approved_at,
                    "rolled_back_version": rolled if isinstance(rolled, int) else None,
                    "left_at": None,
                    "left_how": None,
                }
            )
        elif m.from_stage == Stage.PRODUCTION and spells:
            spells[-1]["left_at"] = m.at
            spells[-1]["left_how"] = _left_how(m)
    return [ProductionSpell(**s) for s in spells]


class _NoEvent:
    payload: dict[str, Any] = {}


_NO_EVENT = _NoEvent()


def _left_how(m: StageChange) -> str:
    if m.kind == "rollback":
        return f"rolled back by {m.actor} ({m.reason or 'no reason'})"
    if m.kind == "demote":
        return m.reason or "superseded"
    return f"moved to {m.to_stage.value} by {m.actor}"


def _summary(reads: PackReads, spells: list[ProductionSpell]) -> str:
    v = reads.version
    if not spells:
        return f"Never in production; the version is in {v.stage.value}."
    last = spells[-1]
    approval = f"the approval of {names(last.approved_by)}" if last.approved_by else "no counted approval"
    if last.left_at is not None:
        return (
            f"Not in production now: it entered on {when(last.entered_at)} and left on "
            f"{when(last.left_at)}, {last.left_how}."
        )
    if last.how == "rollback":
        demoted = f", rolling back version {last.rolled_back_version}" if last.rolled_back_version else ""
        promoted = f" on {when(last.approved_at)}" if last.approved_at else ""
        return (
            f"Restored to production by rollback on {when(last.entered_at)}, reason “{last.reason or ''}”, "
            f"by {last.by}{demoted}, under {approval} counted at its promotion{promoted}."
        )
    return (
        f"In production since {when(last.entered_at)}: promoted by {last.by} under {approval}, "
        "counted at promotion."
    )


def _stage_at(moves: list[StageChange], at: datetime) -> Stage | None:
    stage = None
    for m in moves:
        if m.at <= at:
            stage = m.to_stage
    return stage


# --- gates --------------------------------------------------------------------------------------


def _gates(
    reads: PackReads, spells: list[ProductionSpell], rollbacks: dict[datetime, AuditEvent]
) -> list[GateEntry]:
    v = reads.version
    evidence = v.evidence or []
    last = {e.gate: i for i, e in enumerate(evidence)}
    waived = {(w.gate, w.evidence_at): w for w in v.waivers or []}
    out = []
    for i, e in enumerate(evidence):
        latest = last[e.gate] == i
        note = _gate_note(reads, e, spells, rollbacks, waived) if latest and not e.passed else None
        out.append(GateEntry(**e.model_dump(), latest=latest, note=note))
    return out


def _gate_note(
    reads: PackReads,
    e: Evidence,
    spells: list[ProductionSpell],
    rollbacks: dict[datetime, AuditEvent],
    waived: dict[tuple[str, datetime], Waiver],
) -> str | None:
    w = waived.get((e.gate, e.at))
    if w is not None:
        return f"waived by {w.actor} on {when(w.at)}: {w.reason}"
    live = spells[-1] if spells and spells[-1].left_at is None else None
    if live is None:
        return None
    if live.how == "rollback" and e.at < live.entered_at:
        event = rollbacks.get(live.entered_at)
        policy = reads.document(event.payload.get("policy_sha256")) if event is not None else None
        rule = ((policy or {}).get("stages") or {}).get(Stage.PRODUCTION.value) or {}
        required = ", ".join(rule.get("gates") or []) or "none"
        return (
            f"recorded before the rollback of {when(live.entered_at)}, which restored this version: a rollback "
            f"re-checks only the gates its policy requires for production ({required}) and the approvals "
            "of its last promotion"
        )
    if e.at >= live.entered_at:
        return (
            f"recorded on {when(e.at)} while in production (entered {when(live.entered_at)}); a result "
            "recorded after the version entered production does not undo that entry"
        )
    return None
