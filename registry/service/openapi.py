"""The server's OpenAPI document as the routes really answer, and the offline ``/docs`` page.

FastAPI declares 422 for every route with parameters; this server answers a request of the wrong
shape with 400 ``application/problem+json`` instead, and refuses with 401, 403, 404, 409 and 413
in the same shape. The document says so, route by route, with one ``Problem`` schema.

``/docs`` is Swagger UI from the assets the ``fastapi-offline`` package ships, started by a local
script, so the page works with no network and under a CSP that allows no inline script.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from registry.service.caller import public
from registry.service.problem import MEDIA_TYPE

PROBLEM_REF = "#/components/schemas/Problem"
STATIC = Path(__file__).parent / "static"
# Swagger UI injects style attributes; scripts and everything else come from this server only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

WHY: dict[int, str] = {
    400: "The request is malformed; `field` names what is wrong.",
    401: "No credential, or an unknown, revoked or expired one (with `WWW-Authenticate: Bearer`).",
    403: "The caller's roles or identity do not allow it.",
    404: "What was asked for does not exist.",
    409: "A governance rule or an integrity check refused it; nothing was written.",
    413: "The request body is over the server's limit.",
    502: "The artifact store failed.",
    503: "The database is unavailable.",
}
GUARDED = (400, 401, 403, 503)  # every route that needs a credential can answer these


class Problem(BaseModel):
    """An error, as ``application/problem+json`` (RFC 9457) with the govflow error it rebuilds."""

    type: str = Field(description="urn:govflow:error:NAME.")
    title: str = Field(description="The govflow error's name.")
    status: int = Field(description="The HTTP status.")
    detail: str = Field(description="One line saying what was refused and why.")
    govflow_error: str = Field(description="The error class the client raises.")
    field: str | None = Field(default=None, description="The input the error is about, if one.")
    model: str | None = Field(default=None, description="The model concerned, if one.")
    version: int | None = Field(default=None, description="The version concerned, if one.")
    reason: str | None = Field(default=None, description="A reason the error carries, if any.")


def problem_response(status: int) -> dict[str, Any]:
    """One OpenAPI response entry: ``status`` answered as a ``Problem``."""
    return {"description": WHY[status], "content": {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's own error statuses, for its decorator's ``responses=`` (400/401/403 are implied)."""
    return {status: problem_response(status) for status in statuses}


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: no 422, a ``Problem`` for every error status, bearer security."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for gone in ("HTTPValidationError", "ValidationError"):
        schemas.pop(gone, None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    doc["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API token or an OIDC JWT."}
    }
    for operations in doc.get("paths", {}).values():
        for op in operations.values():
            _complete(op)
    app.openapi_schema = doc
    return doc


def _complete(op: dict[str, Any]) -> None:
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    statuses = list(GUARDED) if op.get("x-govflow-permissions") else []
    if "requestBody" in op:
        statuses.append(413)
    for status in statuses:
        responses.setdefault(str(status), problem_response(status))
    if op.get("x-govflow-permissions"):
        op["security"] = [{"bearer": []}]
    op["responses"] = dict(sorted(responses.items()))


def install(app: FastAPI) -> None:
    """Serve the document above at ``/openapi.json`` and Swagger UI at ``/docs``, offline."""
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
    assets = files("fastapi_offline") / "static"

    @app.get("/docs", include_in_schema=False, dependencies=[public()])
    async def docs_page() -> FileResponse:
        return FileResponse(
            STATIC / "docs.html", media_type="text/html", headers={"Content-Security-Policy": CSP}
        )

    @app.get("/docs/docs.js", include_in_schema=False, dependencies=[public()])
    async def docs_script() -> FileResponse:
        return FileResponse(STATIC / "docs.js", media_type="text/javascript")

    app.mount("/docs/assets", StaticFiles(directory=str(assets)), name="docs-assets")
