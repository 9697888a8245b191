"""The registry server's application: the whole registry API as JSON over HTTP."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from registry.errors import GovflowError, InvalidInput
from registry.service import (
    openapi,
    problem,
    routes_audit,
    routes_blobs,
    routes_decisions,
    routes_users,
    routes_versions,
)
from registry.service.caller import Authenticator, GuardedRoute, public
from registry.service.limits import BodyLimit, max_json

DEFAULT_MAX_UPLOAD = 5 * 1024**3  # 5 GiB


def _max_upload() -> int:
    raw = os.environ.get("GOVFLOW_SERVER_MAX_UPLOAD")
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_UPLOAD
    if not raw.strip().isdigit() or int(raw) < 1:
        raise InvalidInput(
            f"GOVFLOW_SERVER_MAX_UPLOAD: {raw!r} is not a positive number of bytes",
            field="GOVFLOW_SERVER_MAX_UPLOAD",
        )
    return int(raw)


def create_app(registry: Any, authenticator: Authenticator) -> FastAPI:
    """The FastAPI app serving ``registry``; every route but ``/health`` and ``/docs`` needs a credential.

    Each route declares the permission it needs (``registry.service.caller.needs``) and refuses
    anyone else before it reads the request; docs/security.md lists them.

    Reads GOVFLOW_SERVER_MAX_UPLOAD (bytes, default 5 GiB), GOVFLOW_SERVER_MAX_JSON (bytes of a
    JSON request body, default 16 MiB), GOVFLOW_SERVER_PRESIGN (1: hand out presigned S3 URLs for
    downloads) and GOVFLOW_SERVER_UPLOAD_DIR (where uploads are spooled).
    """
    app = FastAPI(
        title="govflow registry",
        description="Model registry, approvals, audit trail. Errors are application/problem+json.",
        version="1",
        docs_url=None,  # openapi.install serves /docs from the packaged assets
        redoc_url=None,
    )
    app.router.route_class = GuardedRoute
    app.state.registry = registry
    app.state.authenticator = authenticator
    app.state.max_upload = _max_upload()
    app.state.presign = os.environ.get("GOVFLOW_SERVER_PRESIGN", "") == "1"
    app.state.upload_dir = os.environ.get("GOVFLOW_SERVER_UPLOAD_DIR") or tempfile.gettempdir()

    app.add_middleware(BodyLimit, cap=max_json())
    app.add_exception_handler(GovflowError, problem.on_govflow_error)
    app.add_exception_handler(RequestValidationError, problem.on_validation_error)
    app.add_exception_handler(StarletteHTTPException, problem.on_http_error)
    app.add_exception_handler(Exception, problem.on_unexpected)

    @app.get("/health", tags=["health"], dependencies=[public()])
    async def health() -> dict[str, str]:
        """Liveness, unauthenticated; says nothing about the registry's data."""
        return {"status": "ok"}

    for module in (routes_versions, routes_decisions, routes_blobs, routes_audit, routes_users):
        app.include_router(module.router)
    app.include_router(routes_users.whoami_router)
    openapi.install(app)
    # The hot path first: same behaviour as the documented route, a fraction of its overhead.
    app.router.routes.insert(0, Route("/api/v1/resolve", routes_versions.resolve_fast, methods=["GET"]))
    return app
