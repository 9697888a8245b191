"""Models and versions: register, read, resolve, history, production-at, impact."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from registry import servable
from registry.entities import ModelPage, ModelVersion, ProductionAt, StageChange, VersionPage, VersionRef
from registry.errors import InvalidInput
from registry.service.caller import Call, GuardedRoute, Needs, needs
from registry.service.openapi import problems
from registry.service.responses import ok
from registry.service.schemas import RegisterBody

router = APIRouter(prefix="/api/v1", tags=["models"], route_class=GuardedRoute)
_READ = Needs(("read",))


@router.get("/resolve", response_model=VersionRef, responses=problems(404))
def resolve(ref: str, c: Call = needs("read")) -> Response:
    """The cheap lookup: ``name@alias`` or ``name/VERSION`` -> version and artifact."""
    return ok(c.run(c.registry.resolve, ref))


async def resolve_fast(request: Request) -> Response:
    """``resolve`` without FastAPI's per-request machinery (the hot path of every deploy target).

    Mounted ahead of the documented route above, which keeps the OpenAPI entry; it behaves the
    same: a missing ``ref`` is the same 400 naming the field.
    """
    c = Call(request, _READ, "/api/v1/resolve")
    return ok(await run_in_threadpool(c.run, _resolve, c.registry, request.query_params.get("ref")))


def _resolve(registry: Any, ref: str | None) -> VersionRef:
    if ref is None:  # after the caller is admitted, as FastAPI's validation comes after GuardedRoute's
        raise InvalidInput("ref: Field required", field="ref")
    resolved: VersionRef = registry.resolve(ref)
    return resolved


@router.get("/refs", response_model=ModelVersion, responses=problems(404))
def get(ref: str, c: Call = needs("read")) -> Response:
    """A version by ``name/VERSION`` or ``name@ALIAS``, with approvals and evidence."""
    return ok(c.run(c.registry.get, ref))


def _number(text: str | None) -> Any:
    # ASCII digits become an int; anything else reaches the registry as given, which refuses it
    # with the same line an embedded caller gets.
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) < 12 else text


def _filters(stage: str | None, alias: str | None, tag: list[str], metric: list[str]) -> dict[str, Any]:
    return {"stage": stage, "alias": alias, "tags": tag or None, "metrics": metric or None}


_LIMIT = Query(default=None, description="At most this many (1..10000); none = all.")
_TOKEN = Query(default=None, description="next_page_token of the previous page.")
_STAGE = Query(default=None, description="Only versions in this stage.")
_ALIAS = Query(default=None, description="Only the version this alias points at.")
_TAG = Query(default=[], description="KEY=VALUE; repeatable, all must hold.")
_METRIC = Query(default=[], description="NAME OP NUMBER, OP one of > >= < <= = (e.g. auc>=0.8); repeatable.")


@router.get("/models", response_model=ModelPage)
def models(
    limit: str | None = _LIMIT,
    page_token: str | None = _TOKEN,
    stage: str | None = _STAGE,
    alias: str | None = _ALIAS,
    tag: list[str] = _TAG,
    metric: list[str] = _METRIC,
    c: Call = needs("read"),
) -> Response:
    """Models by name, a page at a time; filters keep models having a version matching them all."""
    page = c.run(
        c.registry.models, limit=_number(limit), page_token=page_token, **_filters(stage, alias, tag, metric)
    )
    return ok({"models": list(page), "next_page_token": page.next_page_token})


@router.get("/models/{name}/versions", response_model=VersionPage, responses=problems(404))
def versions(
    name: str,
    limit: str | None = _LIMIT,
    page_token: str | None = _TOKEN,
    stage: str | None = _STAGE,
    alias: str | None = _ALIAS,
    tag: list[str] = _TAG,
    metric: list[str] = _METRIC,
    with_decisions: bool = Query(default=False, description="Fill approvals, evidence and waivers."),
    before: str | None = Query(default=None, description="Only versions numbered below this."),
    c: Call = needs("read"),
) -> Response:
    """Versions of a model, newest first, a page at a time (approvals and evidence null unless asked)."""
    page = c.run(
        c.registry.versions,
        name,
        limit=_number(limit),
        page_token=page_token,
        with_decisions=with_decisions,
        before=_number(before),
        **_filters(stage, alias, tag, metric),
    )
    return ok({"versions": list(page), "next_page_token": page.next_page_token})


@router.post(
    "/models/{name}/versions", response_model=ModelVersion, status_code=201, responses=problems(404, 409)
)
def register(name: str, body: RegisterBody, c: Call = needs("register")) -> Response:
    """Register a version from an uploaded blob (``PUT /api/v1/blobs/{sha256}`` first).

    A version the policy would keep out of production is registered with its warning in the
    ``X-Govflow-Warning`` header, which the client raises again as a ``ServingWarning``.
    """
    with servable.collected_warnings() as found:
        mv = c.run(
            c.registry.register_stored,
            name,
            body.sha256,
            actor=body.actor,
            artifact_format=body.artifact_format,
            **body.fields,
        )
    response = ok(mv, 201)
    for warning in found:
        response.headers.append(servable.WARNING_HEADER, servable.warning_header(warning))
    return response


@router.get("/models/{name}/versions/{version}", response_model=ModelVersion, responses=problems(404))
def get_version(name: str, version: int, c: Call = needs("read")) -> Response:
    return ok(c.run(c.registry.get_version, name, version))


@router.get("/models/{name}/history", response_model=list[StageChange], responses=problems(404))
def history(name: str, c: Call = needs("read")) -> Response:
    return ok(c.run(c.registry.history, name))


@router.get("/models/{name}/production-at", response_model=ProductionAt, responses=problems(404))
def production_at(
    name: str, at: str = Query(description="ISO 8601 time with a timezone."), c: Call = needs("read")
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
    c: Call = needs("read"),
) -> Response:
    """Versions that used a dataset (URI and/or digest) or a code commit (or prefix)."""
    return ok(c.run(c.registry.impact, dataset=dataset, digest=digest, commit=commit))
