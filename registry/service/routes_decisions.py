"""Lifecycle: transitions, approvals, approval codes, waivers, evidence, rollback, aliases."""

from __future__ import annotations

from fastapi import APIRouter, Response

from registry.entities import Approval, Evidence, ModelVersion, RollbackResult
from registry.service.caller import Call, GuardedRoute, needs
from registry.service.openapi import problems
from registry.service.responses import ok
from registry.service.schemas import (
    AliasBody,
    ApproveBody,
    CodeBody,
    CodeOut,
    DecisionBody,
    EvidenceBody,
    RollbackBody,
    TransitionBody,
    WaiveBody,
)

router = APIRouter(prefix="/api/v1/models/{name}", tags=["lifecycle"], route_class=GuardedRoute)
VERSION = "/versions/{version}"


@router.post(VERSION + "/transition", response_model=ModelVersion, responses=problems(404, 409))
def transition(
    name: str,
    version: int,
    body: TransitionBody,
    c: Call = needs("stage", "transition", to="move a version between stages"),
) -> Response:
    """Move a version along the stage graph; entering a stage enforces the policy."""
    return ok(c.run(c.registry.transition, name, version, body.stage, reason=body.reason, actor=body.actor))


@router.post(VERSION + "/approve", response_model=Approval, responses=problems(404, 409))
def approve(
    name: str,
    version: int,
    body: ApproveBody,
    c: Call = needs("approve", "form", to="approve a version or relay a form decision"),
) -> Response:
    """Record an approve decision."""
    return ok(
        c.run(
            c.registry.approve,
            name,
            version,
            reason=body.reason,
            actor=body.actor,
            stage=body.stage,
            claimed_by=body.claimed_by,
            code=body.code,
        )
    )


@router.post(VERSION + "/reject", response_model=Approval, responses=problems(404, 409))
def reject(
    name: str,
    version: int,
    body: DecisionBody,
    c: Call = needs("reject", "form", to="reject a version or relay a form decision"),
) -> Response:
    """Record a reject decision."""
    return ok(
        c.run(
            c.registry.reject,
            name,
            version,
            reason=body.reason,
            actor=body.actor,
            stage=body.stage,
            claimed_by=body.claimed_by,
        )
    )


@router.post(VERSION + "/approval-code", response_model=CodeOut, responses=problems(404, 409))
def approval_code(
    name: str, version: int, body: CodeBody, c: Call = needs("approve", to="ask for an approval code")
) -> Response:
    """Issue a one-time approval code bound to the caller and this version."""
    code = c.run(
        c.registry.approval_code, name, version, actor=body.actor, valid_for=body.valid_for, stage=body.stage
    )
    return ok({"code": code})


@router.post(VERSION + "/waivers", status_code=201, responses=problems(404, 409))
def waive(name: str, version: int, body: WaiveBody, c: Call = needs("waive")) -> Response:
    """Let a failed gate stand, with an audited reason."""
    return ok(c.run(c.registry.waive, name, version, body.gate, reason=body.reason, actor=body.actor), 201)


@router.post(VERSION + "/evidence", response_model=Evidence, status_code=201, responses=problems(404, 409))
def add_evidence(name: str, version: int, body: EvidenceBody, c: Call = needs("evidence")) -> Response:
    """Attach a gate result (append-only)."""
    ev = c.run(
        c.registry.add_evidence,
        name,
        version,
        gate=body.gate,
        passed=body.passed,
        value=body.value,
        threshold=body.threshold,
        details=body.details,
        actor=body.actor,
    )
    return ok(ev, 201)


@router.post("/rollback", response_model=RollbackResult, responses=problems(404, 409))
def rollback(name: str, body: RollbackBody, c: Call = needs("rollback")) -> Response:
    """Demote the production version and restore the one before it."""
    return ok(
        c.run(
            c.registry.rollback,
            name,
            reason=body.reason,
            actor=body.actor,
            expected_version=body.expected_version,
        )
    )


@router.put("/aliases/{alias}", status_code=204, responses=problems(404, 409))
def set_alias(name: str, alias: str, body: AliasBody, c: Call = needs("alias")) -> Response:
    c.run(c.registry.set_alias, name, alias, body.version, actor=body.actor)
    return Response(status_code=204)


@router.delete("/aliases/{alias}", status_code=204, responses=problems(404, 409))
def remove_alias(name: str, alias: str, actor: str | None = None, c: Call = needs("alias")) -> Response:
    c.run(c.registry.remove_alias, name, alias, actor=actor)
    return Response(status_code=204)
