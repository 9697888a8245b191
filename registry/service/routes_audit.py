"""The audit trail (log, verify, streamed export), custom events, and the policy in force."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from registry.entities import AuditEvent, VerifyReport
from registry.service.caller import Call, GuardedRoute, needs
from registry.service.openapi import problems
from registry.service.responses import ok
from registry.service.schemas import DeploymentBody, PickleLoadBody, PolicyBody, RecordBody

router = APIRouter(prefix="/api/v1", tags=["audit"], route_class=GuardedRoute)


@router.get("/audit", response_model=list[AuditEvent], responses=problems(404))
def audit_log(model: str | None = None, limit: int | None = None, c: Call = needs("read")) -> Response:
    """Audit events in chain order, optionally for one model, the last ``limit`` of them."""
    return ok(c.run(c.registry.audit_log, model=model, limit=limit))


@router.get("/audit/verify", response_model=VerifyReport)
def verify(c: Call = needs("read")) -> Response:
    """Recompute the hash chain and compare the tables with the replayed log."""
    return ok(c.run(c.registry.verify_audit))


@router.get("/audit/export", response_class=FileResponse)
def export(c: Call = needs("read")) -> FileResponse:
    """The chain as JSONL, one event per line, streamed from a consistent snapshot."""
    fd, path = tempfile.mkstemp(prefix="govflow-export-", suffix=".jsonl")
    os.close(fd)
    try:
        count = c.run(c.registry.export_audit, path)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path,
        media_type="application/x-ndjson",
        headers={"X-Govflow-Count": str(count)},
        background=BackgroundTask(os.unlink, path),
    )


@router.post("/events", response_model=AuditEvent, status_code=201, responses=problems(404, 409))
def record(body: RecordBody, c: Call = needs("record")) -> Response:
    """Append a custom audit event (``custom.…``); the registry's own namespaces are refused."""
    ev = c.run(
        c.registry.record,
        body.action,
        model=body.model,
        version=body.version,
        payload=body.payload,
        actor=body.actor,
    )
    return ok(ev, 201)


@router.post("/deployments", response_model=AuditEvent, status_code=201, responses=problems(404, 409))
def deployment(body: DeploymentBody, c: Call = needs("deploy")) -> Response:
    """Record that a version was deployed to a target (or that the deploy failed)."""
    ev = c.run(
        c.registry.record_deployment,
        body.model,
        body.version,
        target=body.target,
        ok=body.ok,
        payload=body.payload,
        actor=body.actor,
    )
    return ok(ev, 201)


@router.post("/pickle-loads", response_model=AuditEvent, status_code=201, responses=problems(404, 409))
def pickle_load(body: PickleLoadBody, c: Call = needs("load")) -> Response:
    """Audit a raw-pickle load before the client unpickles: under a policy allowing pickle loads,
    with the version's own ref, sha256 and format."""
    ev = c.run(
        c.registry.note_pickle_load,
        body.model,
        body.version,
        ref=body.ref,
        sha256=body.sha256,
        fmt=body.fmt,
        actor=body.actor,
    )
    return ok(ev, 201)


@router.get("/policy")
def policy_info(c: Call = needs("read")) -> Response:
    """The policy in force: sha256, document, who set it, when and why."""
    return ok(c.run(c.registry.policy_info))


@router.get("/policy/in-force")
def policy_in_force(c: Call = needs("read")) -> Response:
    """The policy decisions are taken under now, as a document (a read: records nothing)."""
    return ok(c.run(lambda: c.registry.policy.model_dump(mode="json")))


@router.put("/policy", responses=problems(409))
def set_policy(body: PolicyBody, c: Call = needs("policy")) -> Response:
    """Replace the policy in force (admin only); audited with the policy's hash. Keys the
    document leaves out take the server's defaults."""

    def work() -> Any:
        return c.registry.set_policy(body.document, reason=body.reason, actor=body.actor)

    return ok(c.run(work))


@router.get("/policy/history")
def policy_history(c: Call = needs("read")) -> Response:
    """Every policy set, oldest first."""
    return ok(c.run(c.registry.policy_history))


@router.get("/policies/{sha256}")
def policy_document(sha256: str, c: Call = needs("read")) -> Response:
    """The policy recorded under ``sha256`` (as decision events name it), or null."""
    doc: dict[str, Any] | None = c.run(c.registry.policy_document, sha256)
    return ok(doc)
