"""Gate results on a version: the latest per gate, waivers, and what keeps a stage closed."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from registry.db.tables import evidence, waivers
from registry.names import same_person
from registry.policy import Policy
from registry.stages import Stage

# Each result with whether an approver waived it: one query for the gates and their waivers.
_GATE_RESULTS = (
    sa.select(
        evidence,
        sa.exists()
        .where(waivers.c.evidence_id == evidence.c.id, waivers.c.version_id == evidence.c.version_id)
        .label("waived"),
    )
    .where(evidence.c.version_id == sa.bindparam("v"))
    .order_by(evidence.c.id)
)


def latest_results(
    conn: Connection,
    policy: Policy,
    row: Row[Any],
    waived: set[int] | None = None,
    seen: dict[str, Any] | None = None,
) -> tuple[dict[str, tuple[int, bool]], dict[str, str]]:
    """The latest (evidence id, passed) per gate, and the gates whose later pass was ignored.

    Under separation of duties the registrant's pass never clears a failure, and a failure an
    evaluator other than the registrant recorded is cleared only by that evaluator's pass: a
    second pipeline token cannot overwrite it; that takes an approver's waiver.

    ``waived`` collects the ids of waived results; ``seen["evidence"]`` keeps the rows read.
    """
    latest: dict[str, tuple[int, bool]] = {}
    failed_by: dict[str, str] = {}
    ignored: dict[str, str] = {}  # gate -> why its later pass did not count
    rows = conn.execute(_GATE_RESULTS, {"v": row.id}).all()
    if seen is not None:
        seen["evidence"] = rows
    for r in rows:
        ev_id, gate, passed, actor, is_waived = r.id, r.gate, r.passed, r.actor, r.waived
        if is_waived and waived is not None:
            waived.add(ev_id)
        before = latest.get(gate)
        if (
            passed
            and before is not None
            and not before[1]
            and policy.separation_of_duties
            and (
                same_person(actor, row.registered_by)
                or not (same_person(actor, failed_by[gate]) or same_person(failed_by[gate], row.registered_by))
            )
        ):
            ignored[gate] = (
                f"a later pass by the registrant {row.registered_by} does not clear a failure"
                if same_person(actor, row.registered_by)
                else f"a later pass by {actor} does not clear a failure {failed_by[gate]} recorded"
            )
            continue
        latest[gate] = (ev_id, bool(passed))
        if not passed:
            failed_by[gate] = actor
    return latest, ignored


def gate_problems(
    conn: Connection,
    policy: Policy,
    row: Row[Any],
    target: Stage,
    *,
    every_gate: bool | None = None,
    seen: dict[str, Any] | None = None,
) -> list[str]:
    """What keeps the gates of ``target`` from passing; empty when they all pass.

    Entering production, the latest result of every gate recorded counts (``every_gate``): a failed
    one blocks unless an approver waived that very result and the policy allows waivers. Other
    stages check only the gates their rule requires.
    """
    rule = policy.rule(target)
    every = target == Stage.PRODUCTION if every_gate is None else every_gate
    if not rule.gates and not every:
        return []
    waived: set[int] = set()
    latest, ignored = latest_results(conn, policy, row, waived, seen)
    if not policy.waivers:
        waived.clear()
    watched = sorted(set(latest) | set(rule.gates)) if every else list(rule.gates)
    failed = [g for g in watched if g in latest and not latest[g][1] and latest[g][0] not in waived]
    missing = [g for g in rule.gates if g not in latest]
    parts = []
    if failed:
        how = ""
        if every:  # entering production: say how a failure may still be let through
            how = (
                "; an approver may waive one with `govflow waive`"
                if policy.waivers
                else "; the policy forbids waivers"
            )
        parts.append(f"failed: {', '.join(failed)}{how}")
    parts.extend(dict.fromkeys(ignored[g] for g in failed if g in ignored))
    if missing:
        parts.append(f"missing: {', '.join(missing)}")
    return parts
