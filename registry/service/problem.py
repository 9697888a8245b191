"""Errors as ``application/problem+json`` (RFC 9457), carrying the govflow error type and field.

The client rebuilds the same exception class from ``govflow_error``, so a caller cannot tell
which side refused.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry import errors
from registry.errors import GovflowError

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("govflow.server")

# The first class here the error is an instance of gives the status (so ArtifactNotFound, both a
# store error and a lookup, is a 404); anything else is a 400.
STATUS: dict[type[GovflowError], int] = {
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.InvalidInput: 400,
    errors.Refused: 409,
    errors.IntegrityError: 409,
    errors.StorageError: 503,
    errors.ArtifactStoreError: 502,
}


def status_for(exc: GovflowError) -> int:
    """The HTTP status of a govflow error."""
    for cls, status in STATUS.items():
        if isinstance(exc, cls):
            return status
    return 400


def body(name: str, status: int, detail: str, *, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The problem document."""
    out: dict[str, Any] = {
        "type": f"urn:govflow:error:{name}",
        "title": name,
        "status": status,
        "detail": " ".join(detail.splitlines()),
        "govflow_error": name,
        "field": field,
        "model": extra.pop("model", None),
        "version": extra.pop("version", None),
    }
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def response(doc: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(doc, status_code=doc["status"], media_type=MEDIA_TYPE, headers=headers)


def from_error(exc: GovflowError, status: int | None = None) -> JSONResponse:
    """The problem response for a govflow error."""
    status = status or status_for(exc)
    extra: dict[str, Any] = {"model": exc.model, "version": exc.version, "reason": exc.reason}
    for attr in ("seq", "location"):
        extra[attr] = getattr(exc, attr, None)
    field = getattr(exc, "field", None) or exc.fields.get("field")
    # The message, not str(exc): where the server's own database lives is not the client's to read;
    # the client names the registry it called (the server's URL).
    doc = body(type(exc).__name__, status, exc.message, field=field, **extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return response(doc, headers)


async def on_govflow_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GovflowError)
    return from_error(exc)


async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """A request of the wrong shape: one line naming the first bad field."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = "body" if first.get("type") == "json_invalid" else ".".join(loc) or "request"
    return response(body("InvalidInput", 400, f"{field}: {first.get('msg')}", field=field))


async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown path, wrong method) in the same shape."""
    assert isinstance(exc, StarletteHTTPException)
    name = "NotFound" if exc.status_code == 404 else "GovflowError"
    return response(body(name, exc.status_code, str(exc.detail)))


async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged on the server, and a 500 that reveals nothing of it."""
    log.error("unexpected error", exc_info=exc)
    return response(body("GovflowError", 500, "internal server error; see the server log"))
