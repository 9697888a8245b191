"""Decisions on versions under review: approve, reject, one-time approval codes and gate waivers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from registry import approval_codes, gates, identity, lifecycle, queries
from registry.auth import users
from registry.base import RegistryBase, now
from registry.db.tables import approvals, waivers
from registry.entities import Approval, Waiver
from registry.errors import Forbidden, InvalidInput, Refused, SeparationOfDuties
from registry.names import same_person, shown
from registry.stages import Stage, parse_stage
from registry.validate import check_actor, check_name, check_text, check_version, same_actor


class Decisions(RegistryBase):
    """Approvals, rejections, approval codes and waivers."""

    def approve(
        self,
        name: str,
        version: int,
        *,
        reason: str | None = None,
        actor: str | None = None,
        stage: str | Stage = Stage.PRODUCTION,
        claimed_by: str | None = None,
        code: str | None = None,
    ) -> Approval:
        """Record an approve decision; refuses the registrant, a repeat decider, a non-approver.

        ``claimed_by`` is a name typed into a form: recorded as a claim, which does not count
        under ``authenticated_approvals``. ``code`` is a one-time approval code: the decision is
        that of the principal who asked for the code.
        """
        return self._decide(name, version, "approve", reason, actor, parse_stage(stage), claimed_by, code)

    def reject(
        self,
        name: str,
        version: int,
        *,
        reason: str,
        actor: str | None = None,
        stage: str | Stage = Stage.PRODUCTION,
        claimed_by: str | None = None,
    ) -> Approval:
        """Record a reject decision and send a staged version back to development."""
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("reason: a rejection needs a reason", field="reason")
        return self._decide(name, version, "reject", reason, actor, parse_stage(stage), claimed_by, None)

    def _decide(
        self,
        name: str,
        version: int,
        decision: str,
        reason: str | None,
        actor: str | None,
        target: Stage,
        claimed_by: str | None,
        code: str | None,
    ) -> Approval:
        check_name(name)
        check_version(version)
        reason = check_text(reason, "reason")
        caller = identity.current()
        if code is not None and claimed_by is not None:
            raise InvalidInput("code: give an approval code or a typed name, not both", field="code")
        own_reject = False
        if code is not None:
            if not (caller.may("form") or caller.may("approve")):
                identity.require("form", "redeem an approval code")
            who = None
        elif claimed_by is not None:
            identity.require("form", "relay a decision typed into a form")
            who = check_actor(claimed_by, "claimed_by")
        else:
            if decision == "reject" and not caller.may("reject") and caller.may("register"):
                own_reject = True  # a pipeline may reject its own staged version
            else:
                identity.require(decision, f"{decision} a version")
            who = identity.actor_for(actor)
        seeder = who or identity.actor_for(None)
        at = now()

        def work(conn: Connection) -> Approval:
            row = queries.version_row(conn, name, version)
            sha, policy = self._policy_in_force(conn, seeder, at)
            decider, code_id = who, None
            if code is not None:
                decider, code_id = approval_codes.redeem(conn, code, row, f"{name}/{version}", at=at)
            assert decider is not None
            if claimed_by is not None:
                users.refuse_lookalike(conn, decider, "claimed_by")
            if own_reject and not (
                same_actor(decider, row.registered_by) and Stage(row.stage) == Stage.STAGING
            ):
                raise Forbidden(
                    f"{decider} may reject only its own staged versions; {name}/{version} is "
                    f"{row.stage}, registered by {row.registered_by}",
                    field="role",
                )
            lifecycle.check_decider(
                conn,
                policy,
                row,
                name,
                target,
                decider,
                approving=decision == "approve",
                claimed=claimed_by is not None,
                now=at,
            )
            conn.execute(
                approvals.insert().values(
                    version_id=row.id,
                    decision=decision,
                    actor=decider,
                    reason=reason,
                    target_stage=target.value,
                    review_round=row.review_round,
                    at=at,
                    channel=caller.channel,
                    claimed_by=claimed_by and decider,
                )
            )
            payload: dict[str, Any] = {
                "target_stage": target.value,
                "reason": reason,
                "policy_sha256": sha,
                "channel": caller.channel,
                "claimed_by": claimed_by and decider,
            }
            if code_id is not None:
                payload["code_id"] = code_id
            if decision == "reject" and Stage(row.stage) == Stage.STAGING:
                lifecycle.move(
                    conn, row, Stage.DEVELOPMENT, kind="reject", actor=decider, reason=reason, at=at
                )
                payload["moved_to"] = Stage.DEVELOPMENT.value
            action = "version.approved" if decision == "approve" else "version.rejected"
            self._audit(conn, at, decider, action, name, version, payload)
            return Approval(
                decision=decision,
                actor=decider,
                reason=reason,
                target_stage=target,
                at=at,
                review_round=row.review_round,
                current=decision == "approve",
                channel=caller.channel,
                claimed_by=claimed_by and decider,
            )

        return self.db.transact(work)

    def approval_code(
        self,
        name: str,
        version: int,
        *,
        actor: str | None = None,
        valid_for: int = 600,
        stage: str | Stage = Stage.PRODUCTION,
    ) -> str:
        """A one-time code that carries the caller's approval of this version through a form.

        Bound to the caller and to the version's current review; valid ``valid_for`` seconds
        (30 to 3600), single use. Refused for anyone who may not approve the version now.
        """
        check_name(name)
        check_version(version)
        target = parse_stage(stage)
        identity.require("approve", "ask for an approval code")
        who = identity.actor_for(actor)
        at = now()

        def work(conn: Connection) -> str:
            row = queries.version_row(conn, name, version)
            _, policy = self._policy_in_force(conn, who, at)
            lifecycle.check_decider(conn, policy, row, name, target, who, approving=True, now=at)
            code, code_id = approval_codes.issue(conn, who, row, at=at, valid_for=valid_for)
            self._audit(
                conn,
                at,
                who,
                "approval.code_issued",
                name,
                version,
                {"code_id": code_id, "valid_for": valid_for, "review_round": row.review_round},
            )
            return code

        return self.db.transact(work)

    def waive(self, name: str, version: int, gate: str, *, reason: str, actor: str | None = None) -> Waiver:
        """Let the latest failed result of ``gate`` stand, with a reason (audited).

        Refused when the policy forbids waivers, for the registrant, for a gate whose latest result
        passed or was already waived, and for versions not under review.
        """
        check_name(name)
        check_version(version)
        check_actor(gate, "gate")
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("reason: a waiver needs a reason", field="reason")
        reason = check_text(reason, "reason") or ""
        identity.require("waive", "waive a failed gate")
        who = identity.actor_for(actor)
        at = now()

        def work(conn: Connection) -> Waiver:
            row = queries.version_row(conn, name, version)
            sha, policy = self._policy_in_force(conn, who, at)
            ref = f"{name}/{version}"
            if not policy.waivers:
                raise Refused(f"the policy forbids waivers; {ref} needs a passing {gate} result", model=name)
            if Stage(row.stage) not in (Stage.DEVELOPMENT, Stage.STAGING):
                raise Refused(f"{ref} is in {row.stage}; waivers are for versions under review", model=name)
            if policy.separation_of_duties and same_person(who, row.registered_by):
                raise SeparationOfDuties(
                    f"{shown(who, row.registered_by)} registered {ref} and may not waive its gates "
                    "(separation of duties)",
                    model=name,
                    version=version,
                )
            waived: set[int] = set()
            seen: dict[str, Any] = {}
            latest, _ = gates.latest_results(conn, policy, row, waived, seen)
            if gate not in latest:
                raise Refused(f"{ref} has no {gate} result to waive", model=name, version=version)
            ev_id, passed = latest[gate]
            if passed:
                raise Refused(f"{ref}: the latest {gate} result passed; nothing to waive", model=name)
            if ev_id in waived:
                raise Refused(
                    f"{ref}: the latest {gate} result is already waived", model=name, version=version
                )
            ev_at = next(r.at for r in seen["evidence"] if r.id == ev_id)
            conn.execute(
                waivers.insert(),
                {
                    "version_id": row.id,
                    "gate": gate,
                    "evidence_id": ev_id,
                    "actor": who,
                    "reason": reason,
                    "at": at,
                },
            )
            self._audit(
                conn,
                at,
                who,
                "evidence.waived",
                name,
                version,
                {"gate": gate, "evidence_at": ev_at.isoformat(), "reason": reason, "policy_sha256": sha},
            )
            return Waiver(gate=gate, evidence_at=ev_at, actor=who, reason=reason, at=at)

        return self.db.transact(work)
