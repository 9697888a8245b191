"""Models and versions: register, read, resolve, history, production-at, impact."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from registry.entities import ModelSummary, ModelVersion, ProductionAt, StageChange, VersionRef
from registry.errors import InvalidInput
from registry.service.caller import Call, call
from registry.service.responses import ok
from registry.service.schemas import RegisterBody

router = APIRouter(prefix="/api/v1", tags=["models"])


@router.get("/resolve", response_model=VersionRef)
def resolve(ref: str, c: Call = Depends(call)) -> Response:
    """The cheap lookup: ``name@alias`` or ``name/VERSION`` -> version and artifact."""
    return ok(c.run(c.registry.resolve, ref))


async def resolve_fast(request: Request) -> Response:
    """``resolve`` without FastAPI's per-request machinery (the hot path of every deploy target).

    Mounted ahead of the documented route above, which keeps the OpenAPI entry; it behaves the
    same: a missing ``ref`` is the same 400 naming the field.
    """
    ref = request.query_params.get("ref")
    if ref is None:
        raise InvalidInput("ref: Field required", field="ref")
    c = Call(request)
    return ok(await run_in_threadpool(c.run, c.registry.resolve, ref))


@router.get("/refs", response_model=ModelVersion)
def get(ref: str, c: Call = Depends(call)) -> Response:
    """A version by ``name/VERSION`` or ``name@ALIAS``, with approvals and evidence."""
    return ok(c.run(c.registry.get, ref))


@router.get("/models", response_model=list[ModelSummary])
def models(c: Call = Depends(call)) -> Response:
    return ok(c.run(c.registry.models))


@router.get("/models/{name}/versions", response_model=list[ModelVersion])
def versions(
    name: str,
    limit: int | None = Query(default=None, description="At most this many (1..1000)."),
    before: int | None = Query(default=None, description="Only versions numbered below this."),
    c: Call = Depends(call),
) -> Response:
    """Versions of a model, newest first (keyset paging with ``before``)."""
    kwargs: dict[str, Any] = {}
    if limit is not None:
        kwargs["limit"] = limit
    if before is not None:
        kwargs["before"] = before
    return ok(c.run(c.registry.versions, name, **kwargs))


@router.post("/models/{name}/versions", response_model=ModelVersion, status_code=201)
def register(name: str, body: RegisterBody, c: Call = Depends(call)) -> Response:
    """Register a version from an uploaded blob (``PUT /api/v1/blobs/{sha256}`` first)."""
    mv = c.run(
        c.registry.register_stored,
        name,
        body.sha256,
        actor=body.actor,
        artifact_format=body.artifact_format,
        **body.fields,
    )
    return ok(mv, 201)


@router.get("/models/{name}/versions/{version}", response_model=ModelVersion)
def get_version(name: str, version: int, c: Call = Depends(call)) -> Response:
    return ok(c.run(c.registry.get_version, name, version))


@router.get("/models/{name}/history", response_model=list[StageChange])
def history(name: str, c: Call = Depends(call)) -> Response:
    return ok(c.run(c.registry.history, name))


@router.get("/models/{name}/production-at", response_model=ProductionAt)
def production_at(
    name: str, at: str = Query(description="ISO 8601 time with a timezone."), c: Call = Depends(call)
) -> Response:
    try:
        instant = datetime.fromisoformat(at)
    except ValueError:
        raise InvalidInput(f"time: {at!r} is not an ISO 8601 time", field="time") from None
    return ok(c.run(c.registry.production_at, name, instant))


@router.get("/impact", response_model=list[dict[str, Any]])
def impact(
    dataset: str | None = None,
    digest: str | None = None,
    commit: str | None = None,
    c: Call = Depends(call),
) -> Response:
    """Versions that used a dataset (URI and/or digest) or a code commit (or prefix)."""
    return ok(c.run(c.registry.impact, dataset=dataset, digest=digest, commit=commit))
