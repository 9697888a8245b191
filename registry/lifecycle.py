"""Write side of the lifecycle: stage moves, policy checks, aliases and rollback.

Every function here runs inside the caller's write transaction and writes no audit event itself;
the ``Registry`` method that calls it appends the event in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from registry.db.tables import alias_history, aliases, approvals, stage_history, versions
from registry.errors import (
    ApprovalRequired,
    GateFailed,
    NotAnApprover,
    Refused,
    RollbackRefused,
    SeparationOfDuties,
)
from registry.gates import gate_problems
from registry.names import person_keys, same_person, shown
from registry.policy import Policy
from registry.queries import decision_rows, production_row
from registry.servable import check_servable, serving_problems
from registry.stages import TRANSITIONS, Stage
from registry.validate import same_actor

PRODUCTION_ALIAS = Stage.PRODUCTION.value

# Prebuilt statements for the promote/rollback path (each saves ~60 us of SQL construction).
_MOVE = (
    versions.update()
    .where(versions.c.id == sa.bindparam("b_id"))
    .values(
        stage=sa.bindparam("b_stage"),
        review_round=versions.c.review_round + 1,
        stage_changed_at=sa.bindparam("b_at"),
    )
)
_MARK_ROLLED_BACK = (
    versions.update()
    .where(versions.c.id == sa.bindparam("b_id"))
    .values(rolled_back=True, rollback_reason=sa.bindparam("b_reason"))
)
_HISTORY = stage_history.insert()
_ALIAS_TARGET = (
    sa.select(versions.c.version)
    .join(aliases, aliases.c.version_id == versions.c.id)
    .where(aliases.c.model_id == sa.bindparam("m"), aliases.c.alias == sa.bindparam("a"))
)
_ALIAS_DELETE = aliases.delete().where(
    aliases.c.model_id == sa.bindparam("m"), aliases.c.alias == sa.bindparam("a")
)
_ALIAS_INSERT = aliases.insert()
_ALIAS_UPDATE = (
    aliases.update()
    .where(aliases.c.model_id == sa.bindparam("m"), aliases.c.alias == sa.bindparam("a"))
    .values(
        version_id=sa.bindparam("b_vid"), updated_at=sa.bindparam("b_at"), updated_by=sa.bindparam("b_by")
    )
)
UNKNOWN: Any = object()
_ALIAS_HISTORY = alias_history.insert()
_DECISIONS = (
    sa.select(approvals)
    .where(
        approvals.c.version_id == sa.bindparam("v"),
        approvals.c.review_round == sa.bindparam("r"),
        approvals.c.target_stage == sa.bindparam("t"),
    )
    .order_by(approvals.c.id)
)


def move(
    conn: Connection,
    row: Row[Any],
    to: Stage,
    *,
    kind: str,
    actor: str,
    reason: str | None,
    at: datetime,
    approved_by: list[str] | None = None,
    rolled_back: bool = False,
) -> None:
    """Change a version's stage, start a new review round and record the history entry."""
    conn.execute(_MOVE, {"b_id": row.id, "b_stage": to.value, "b_at": at})
    if rolled_back:
        conn.execute(_MARK_ROLLED_BACK, {"b_id": row.id, "b_reason": reason})
    conn.execute(
        _HISTORY,
        {
            "model_id": row.model_id,
            "version_id": row.id,
            "version": row.version,
            "from_stage": row.stage,
            "to_stage": to.value,
            "kind": kind,
            "actor": actor,
            "reason": reason,
            "approved_by": approved_by,
            "at": at,
        },
    )


def point_alias(
    conn: Connection,
    model_id: int,
    alias: str,
    target: Row[Any] | None,
    *,
    actor: str,
    at: datetime,
    previous: int | None = UNKNOWN,
) -> int | None:
    """Point ``alias`` at ``target`` (or remove it when None), keep history; return the old version.

    A caller that knows the alias's current version (the production alias follows the
    production stage) passes it as ``previous`` and saves a lookup.
    """
    key = {"m": model_id, "a": alias}
    old = conn.execute(_ALIAS_TARGET, key).scalar() if previous is UNKNOWN else previous
    new = target.version if target is not None else None
    if old == new:
        return old
    if target is None:
        conn.execute(_ALIAS_DELETE, key)
    elif not conn.execute(_ALIAS_UPDATE, {**key, "b_vid": target.id, "b_at": at, "b_by": actor}).rowcount:
        conn.execute(
            _ALIAS_INSERT,
            {
                "model_id": model_id,
                "alias": alias,
                "version_id": target.id,
                "updated_at": at,
                "updated_by": actor,
            },
        )
    conn.execute(
        _ALIAS_HISTORY,
        {"model_id": model_id, "alias": alias, "version": new, "previous": old, "actor": actor, "at": at},
    )
    return old


def current_decisions(conn: Connection, row: Row[Any], target: Stage) -> list[Row[Any]]:
    """Decisions on this version for ``target`` made in its current review round."""
    return conn.execute(_DECISIONS, {"v": row.id, "r": row.review_round, "t": target.value}).all()


def check_decider(
    conn: Connection,
    policy: Policy,
    row: Row[Any],
    model: str,
    target: Stage,
    actor: str,
    *,
    approving: bool,
    claimed: bool = False,
    now: datetime | None = None,
) -> None:
    """Refuse a decision the policy does not allow from ``actor`` on this version now.

    Under ``authenticated_approvals`` a name typed into a form does not use up that person's
    turn: their authenticated decision is still taken.
    """
    current = Stage(row.stage)
    ref = f"{model}/{row.version}"
    if current in (Stage.PRODUCTION, Stage.ARCHIVED):
        raise Refused(
            f"{ref} is in {current.value}; approvals and rejections are for versions under review "
            "(development or staging); use transition or rollback",
            model=model,
            version=row.version,
        )
    if target not in TRANSITIONS[current]:
        raise Refused(
            f"{ref} is in {current.value}; decisions for {target.value} are taken while it is in "
            f"a stage that may move to {target.value}",
            model=model,
            version=row.version,
        )
    rule = policy.rule(target)
    if approving and policy.separation_of_duties and same_person(actor, row.registered_by):
        raise SeparationOfDuties(
            f"{shown(actor, row.registered_by)} registered {ref} and may not approve it (separation of duties)",
            model=model,
            version=row.version,
        )
    if approving and rule.approvers is not None and not any(same_actor(actor, a) for a in rule.approvers):
        raise NotAnApprover(
            f"{actor} is not an approver for {target.value}; the policy allows "
            f"{', '.join(rule.approvers) or 'nobody'}",
            model=model,
            version=row.version,
        )
    earlier = current_decisions(conn, row, target)
    if policy.authenticated_approvals and not claimed:
        earlier = [d for d in earlier if d.claimed_by is None]
    if now is not None:  # an expired approval may be renewed
        oldest = now - timedelta(seconds=policy.approval_valid_for)
        earlier = [d for d in earlier if d.decision != "approve" or d.at >= oldest]
    twin = next((d.actor for d in earlier if same_person(d.actor, actor)), None)
    if twin is not None:
        raise SeparationOfDuties(
            f"{shown(actor, twin)} has already decided on {ref} in this review; approvers must be distinct",
            model=model,
            version=row.version,
        )


def counted_approvers(
    policy: Policy,
    row: Row[Any],
    target: Stage,
    decisions: list[tuple[str, str, datetime | None, str | None]],
    *,
    now: datetime | None = None,
    skipped: dict[str, list[str]] | None = None,
) -> list[str]:
    """The approvers that count under ``policy``: approve decisions, distinct, not the registrant,
    on the stage's approver list when it has one, not expired (when ``now`` is given) and, under
    ``authenticated_approvals``, not a name typed into a form.

    ``decisions`` are (decision, actor, at, claimed_by); ``skipped`` collects why others did not count.
    """
    rule = policy.rule(target)
    approvers: list[str] = []
    seen: set[tuple[str, str]] = set()
    oldest = now - timedelta(seconds=policy.approval_valid_for) if now is not None else None
    for decision, actor, at, claimed_by in decisions:
        if decision != "approve" or not seen.isdisjoint(person_keys(actor)):
            continue
        if policy.separation_of_duties and same_person(actor, row.registered_by):
            continue
        if rule.approvers is not None and not any(same_actor(actor, a) for a in rule.approvers):
            continue
        if oldest is not None and at is not None and at < oldest:
            if skipped is not None:
                skipped.setdefault("expired", []).append(actor)
            continue
        if policy.authenticated_approvals and claimed_by is not None:
            if skipped is not None:
                skipped.setdefault("typed into a form, not authenticated", []).append(actor)
            continue
        seen |= person_keys(actor)
        approvers.append(actor)
    return approvers


def check_entry(
    conn: Connection,
    policy: Policy,
    row: Row[Any],
    model: str,
    target: Stage,
    now: datetime,
    seen: dict[str, Any] | None = None,
) -> list[str]:
    """Refuse entry to ``target`` unless the version could be served from it (``NotServable``,
    first: no approval fixes that) and the policy's approvals and gates are met.

    Returns the approvers whose decisions counted. ``seen`` keeps the decision and evidence rows
    read, so the caller's read-back need not read them again.
    """
    check_servable(model, row.version, row.artifact_format, row.input_schema, policy, target)
    rule = policy.rule(target)
    ref = f"{model}/{row.version}"
    every = decision_rows(conn, row.id)
    if seen is not None:
        seen["decisions"] = every
    decisions = [
        (d.decision, d.actor, d.at, d.claimed_by)
        for d in every
        if d.review_round == row.review_round and d.target_stage == target.value
    ]
    skipped: dict[str, list[str]] = {}
    approvers = counted_approvers(policy, row, target, decisions, now=now, skipped=skipped)
    if len(approvers) < (rule.approvals or 0):
        have = f"{len(approvers)} ({', '.join(approvers)})" if approvers else "none"
        extra = "".join(f"; not counted, {why}: {', '.join(who)}" for why, who in skipped.items())
        raise ApprovalRequired(
            f"{ref} needs {rule.approvals} approval(s) for {target.value} from someone other "
            f"than the registrant {row.registered_by}; it has {have}{extra}",
            model=model,
            version=row.version,
        )
    problems = gate_problems(conn, policy, row, target, seen=seen)
    if problems:
        raise GateFailed(
            f"{ref} cannot enter {target.value}: gates {'; '.join(problems)}",
            model=model,
            version=row.version,
        )
    return approvers


def _left_production_at(conn: Connection, version_id: int) -> datetime | None:
    return conn.execute(
        sa.select(stage_history.c.at)
        .where(
            stage_history.c.version_id == version_id,
            stage_history.c.from_stage == Stage.PRODUCTION.value,
        )
        .order_by(stage_history.c.id.desc())
        .limit(1)
    ).scalar()


def rollback_refusal(conn: Connection, policy: Policy, row: Row[Any]) -> str | None:
    """Why ``row`` may not be restored by a rollback, or None when it may.

    A rollback restores only an archived version that was not itself rolled back, has not been
    rejected since it last left production, that the current policy would still admit, and that
    could be served under it.
    """
    if row.rolled_back:
        return "it was rolled back"
    if Stage(row.stage) != Stage.ARCHIVED:
        return f"it is in {row.stage}, under a new review"
    unservable = serving_problems(row.artifact_format, row.input_schema, policy, Stage.PRODUCTION)
    if unservable:
        return f"it could not be served: {' and '.join(p.problem for p in unservable)}"
    left = _left_production_at(conn, row.id)
    if left is not None:
        rejected = conn.execute(
            sa.select(approvals.c.actor)
            .where(approvals.c.version_id == row.id, approvals.c.decision == "reject", approvals.c.at >= left)
            .limit(1)
        ).scalar()
        if rejected is not None:
            return f"{rejected} rejected it after it left production"
    rule = policy.rule(Stage.PRODUCTION)
    approvers = counted_approvers(policy, row, Stage.PRODUCTION, last_approvals(conn, row.id))
    if len(approvers) < (rule.approvals or 0):
        return f"the current policy needs {rule.approvals} approval(s) and its promotion had {len(approvers)}"
    problems = gate_problems(conn, policy, row, Stage.PRODUCTION, every_gate=False)
    if problems:
        return f"the current policy's required gates are not met ({'; '.join(problems)})"
    return None


def rollback_target(
    conn: Connection, policy: Policy, model_id: int, current: Row[Any]
) -> tuple[Row[Any] | None, list[str]]:
    """The latest earlier production version that may be restored, and why others were skipped."""
    entries = conn.execute(
        sa.select(stage_history.c.version_id)
        .where(
            stage_history.c.model_id == model_id,
            stage_history.c.to_stage == Stage.PRODUCTION.value,
        )
        .order_by(stage_history.c.id.desc())
    ).scalars()
    seen: set[int] = set()
    skipped: list[str] = []
    for version_id in entries:
        if version_id == current.id or version_id in seen:
            continue
        seen.add(version_id)
        row = conn.execute(sa.select(versions).where(versions.c.id == version_id)).one()
        why = rollback_refusal(conn, policy, row)
        if why is None:
            return row, skipped
        skipped.append(f"version {row.version}: {why}")
    return None, skipped


def plan_rollback(conn: Connection, policy: Policy, model_id: int, model: str) -> tuple[Row[Any], Row[Any]]:
    """(current production row, row to restore); refuse when either is missing."""
    current = production_row(conn, model_id)
    if current is None:
        raise RollbackRefused(f"{model} has no version in production to roll back", model=model)
    target, skipped = rollback_target(conn, policy, model_id, current)
    if target is None:
        detail = f" (skipped {'; '.join(skipped)})" if skipped else ""
        raise RollbackRefused(
            f"{model}/{current.version}: no earlier production version may be restored{detail}",
            model=model,
            version=current.version,
        )
    return current, target


def _last_promotion(conn: Connection, version_id: int) -> Row[Any] | None:
    """The stage-history row (approved_by, at) of this version's last entry into production by promotion."""
    return conn.execute(
        sa.select(stage_history.c.approved_by, stage_history.c.at)
        .where(
            stage_history.c.version_id == version_id,
            stage_history.c.to_stage == Stage.PRODUCTION.value,
            stage_history.c.kind == "promote",
        )
        .order_by(stage_history.c.id.desc())
        .limit(1)
    ).first()


def last_approvers(conn: Connection, version_id: int) -> list[str]:
    """Approvers recorded when this version last entered production by promotion."""
    promo = _last_promotion(conn, version_id)
    return (promo.approved_by if promo is not None else None) or []


def last_approvals(conn: Connection, version_id: int) -> list[tuple[str, str, datetime | None, str | None]]:
    """The approvals counted when this version last entered production by promotion, as
    (decision, actor, at, claimed_by): a name typed into a form stays typed, so a policy that
    now wants authenticated approvals does not count it at a rollback."""
    promo = _last_promotion(conn, version_id)
    if promo is None or not promo.approved_by:
        return []
    counted: list[str] = promo.approved_by
    claims: dict[str, list[str | None]] = {}
    for actor, claimed_by in conn.execute(
        sa.select(approvals.c.actor, approvals.c.claimed_by).where(
            approvals.c.version_id == version_id,
            approvals.c.decision == "approve",
            approvals.c.actor.in_(counted),
            approvals.c.at <= promo.at,
        )
    ):
        claims.setdefault(actor, []).append(claimed_by)
    # authenticated if any of this person's approvals was: that one is what counted
    out: list[tuple[str, str, datetime | None, str | None]] = []
    for actor in counted:
        mine = claims.get(actor, [])
        out.append(("approve", actor, None, None if None in mine or not mine else mine[0]))
    return out
