"""The serving app: the production version of one model behind FastAPI, hot-swapped in place.

- ``POST /predict``: rows in any accepted request shape (``deployments.shapes``: ours and
  MLflow's), validated against the served version's input schema; the answer names the
  version that made it. ``"proba": true`` or ``POST /predict_proba`` answers probabilities.
- ``GET /model``, ``GET /health``: what is served, and whether it is what the registry says.
- ``POST /reload``: check the registry now. It cannot choose what is loaded (the registry
  decides), but it makes the server query the registry and fetch artifacts, so it needs the
  token the server was started with (``deployments.reload_token``); without one it is off.
- A background poll does the same check every ``poll`` seconds: one indexed query, no artifact
  I/O unless the production version changed.
- Every request is logged as one JSON line (method, path, status, version, latency); a client
  that goes away before its body arrived is status 499 on that line, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from time import perf_counter
from typing import Any

import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.logs import EVENTS, REQUESTS, log_json
from deployments.model_slot import ModelSlot, ServedModel, _one_line
from deployments.payload import MAX_ROWS
from deployments.reload_token import TURN_ON, checked_token, matches
from deployments.schemas import Health, ModelInfo, PredictResponse, ReloadResult
from deployments.shapes import parse_request
from registry import Registry
from registry.errors import InvalidInput

MAX_BODY_BYTES = 16 * 1024 * 1024
# After the limit, up to this much more is read and dropped before the 413: closing on unread
# bytes makes the kernel reset the connection, and a client still sending never sees the answer.
DRAIN_BYTES = 64 * 1024 * 1024
# Bodies up to this size (a few hundred rows) are answered on the event loop; larger ones in a thread.
INLINE_BYTES = 64 * 1024
_VERSION_HEADER = b"x-model-version"
GONE = 499  # logged for a client that closed before its request was read (nginx's code for it)


class RequestLog:
    """ASGI middleware writing one JSON line per HTTP request: method, path, status, version, latency.

    Plain ASGI rather than ``BaseHTTPMiddleware``, which costs a task and a stream per request.
    The version comes from the ``x-model-version`` response header the handlers set.
    """

    def __init__(self, app: ASGIApp, model: str) -> None:
        self.app = app
        self.model = model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        status = 500  # what the client gets if the app raises before starting a response
        version: int | None = None

        async def capture(message: Message) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", ()):
                    if key == _VERSION_HEADER:
                        version = int(value)
            await send(message)

        gone: dict[str, str] = {}
        try:
            await self.app(scope, receive, capture)
        except ClientDisconnect:
            # Nobody is left to answer: one log line says so, where uvicorn would print a traceback.
            status, gone = GONE, {"detail": "client went away before the request body arrived"}
        finally:
            log_json(
                REQUESTS,
                method=scope["method"],
                path=scope["path"],
                status=status,
                model=self.model,
                version=version,
                latency_ms=round((perf_counter() - start) * 1000, 3),
                **gone,
            )


def _json(
    body: Any, status: int = 200, version: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    headers = dict(headers or {})
    if version is not None:
        headers["x-model-version"] = str(version)
    text = json.dumps(body, separators=(",", ":"), default=str)
    return Response(text, status_code=status, media_type="application/json", headers=headers)


def _refusal(exc: InvalidInput, version: int, status: int = 422) -> Response:
    problems = [p.model_dump() for p in exc.fields.get("problems", ())]
    return _json({"detail": exc.message, "field": exc.field, "problems": problems}, status, version)


class ProbaResponse(BaseModel):
    """``POST /predict_proba`` (or ``"proba": true``): one probability row per record."""

    model: str = Field(description="Model name.")
    version: int = Field(description="The version that answered (the whole batch).")
    classes: list[Any] = Field(description="The class of each probability column (the model's classes_).")
    predictions: list[list[float]] = Field(description="Per record, the probability of each class.")


# Documentation of the body for /docs; the handler itself parses and validates every shape.
_ROWS = {"type": "array", "items": {"type": "object"}}
_REQUEST_SCHEMA = {
    "description": "Exactly one of the shapes below (or a bare array of objects); proba is optional.",
    "type": "object",
    "properties": {
        "records": _ROWS,
        "dataframe_records": _ROWS,
        "dataframe_split": {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "data": {"type": "array", "items": {"type": "array"}},
                "index": {"type": "array"},
            },
            "required": ["columns", "data"],
        },
        "instances": {"oneOf": [_ROWS, {"type": "object", "additionalProperties": {"type": "array"}}]},
        "inputs": {"oneOf": [_ROWS, {"type": "object", "additionalProperties": {"type": "array"}}]},
        "proba": {"type": "boolean", "default": False},
    },
    "additionalProperties": False,
}
_NO_SCHEMA_HINT = (
    "register it with an input schema (govflow register --input-example/--input-schema, or "
    "register_model(..., input_example=X)), or serve it with --no-schema"
)


async def _read_body(request: Request, limit: int, drain: int) -> tuple[bytes | None, bool]:
    """(the body, True), or (None, whether the rest was read) when it exceeds ``limit`` bytes.

    Past the limit up to ``drain`` more bytes are read and dropped, so the 413 reaches a client
    that sends the whole body before reading (a reset otherwise); a body longer than that, or a
    client waiting for ``100 Continue``, is answered at once and the connection closed.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        waiting = request.headers.get("expect", "").lower() == "100-continue"  # it sends nothing yet
        if waiting or int(declared) > limit + drain:
            return None, False
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            break
        chunks.append(chunk)
    else:
        return b"".join(chunks), True
    chunks.clear()
    async for chunk in stream:
        size += len(chunk)
        if size > limit + drain:
            return None, False
    return None, True


def create_app(
    registry: Registry,
    name: str,
    *,
    poll: float = 2.0,
    actor: str | None = None,
    allow_pickle: bool = False,
    no_schema: bool = False,
    max_rows: int = MAX_ROWS,
    max_body_bytes: int = MAX_BODY_BYTES,
    drain_bytes: int = DRAIN_BYTES,
    inline_bytes: int = INLINE_BYTES,
    reload_token: str | None = None,
) -> FastAPI:
    """Build the app serving ``name@production``; the version is loaded and verified here.

    Refuses to build (the registry's error) when nothing is in production or the production
    version cannot be loaded safely. ``poll <= 0`` turns the background check off, leaving
    ``POST /reload``, which answers only a caller sending ``reload_token`` as a bearer token
    (off when it is None). ``actor`` is who the server's audit events name. Bodies above
    ``inline_bytes`` are parsed and predicted in a worker thread, smaller ones on the loop.
    A version that records no input schema is refused (``InvalidInput``) unless ``no_schema``,
    which passes rows through as a DataFrame of their own keys; a version with a schema is
    always checked against it. A ``reload_token`` under 16 characters is refused too.
    """
    if reload_token is not None:
        reload_token = checked_token(reload_token, "reload_token")  # "" would let "Bearer" alone in
    slot = ModelSlot(
        registry, name, actor=actor, allow_pickle=allow_pickle, retry_after=poll if poll > 0 else 2.0
    )
    first = slot.current
    if first.validator.open and not no_schema:
        raise InvalidInput(
            f"{name}/{first.info.version}: the version records no input columns; {_NO_SCHEMA_HINT}",
            model=name,
            version=first.info.version,
            field="input_schema",
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_poll_forever(slot, poll)) if poll > 0 else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title=f"govflow serving: {name}",
        description="Serves the production version of one model from the govflow registry.",
        lifespan=lifespan,
    )
    app.state.slot = slot
    app.add_middleware(RequestLog, model=name)

    async def handle(request: Request, proba: bool) -> Response:
        served = slot.current  # read once: this request finishes on this version even if a swap lands
        body, whole = await _read_body(request, max_body_bytes, drain_bytes)
        if body is None:
            detail = {"detail": f"body: larger than {max_body_bytes} bytes", "field": "body", "problems": []}
            # The rest of the body was left unread: this connection cannot carry another request.
            return _json(detail, 413, served.info.version, None if whole else {"connection": "close"})
        if len(body) <= inline_bytes:
            # Small requests stay on the loop: a thread hop and two GIL hand-offs cost more than the
            # work, and requests queue for the one core anyway.
            return _answer(served, body, max_rows, proba=proba, no_schema=no_schema)
        # Large ones go to a worker thread so the loop keeps answering /health and /reload.
        return await run_in_threadpool(_answer, served, body, max_rows, proba=proba, no_schema=no_schema)

    refusals = {
        400: {"description": "Probabilities asked of a model without predict_proba; names the model."},
        413: {"description": "The body is larger than the limit."},
        422: {"description": "The payload does not fit the input schema; names the shape and the columns."},
    }
    body_doc = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST_SCHEMA}}}
    }

    @app.post("/predict", response_model=PredictResponse, responses=refusals, openapi_extra=body_doc)
    async def predict(request: Request) -> Response:
        """Predict for rows in one request shape: records, dataframe_records, dataframe_split,
        instances, inputs, or a bare array; ``"proba": true`` answers as ``/predict_proba``.

        Refuses with 422, the field and the column names: a body that is not UTF-8 JSON or is
        nested too deeply, no shape or two shapes, ragged dataframe_split rows, unknown or
        missing columns, wrong JSON types (NaN and Infinity included), numbers the column's
        dtype cannot hold, input the model refuses; 413 beyond the size limit.
        """
        return await handle(request, False)

    @app.post("/predict_proba", response_model=ProbaResponse, responses=refusals, openapi_extra=body_doc)
    async def predict_proba(request: Request) -> Response:
        """Class probabilities (``predict_proba``) for rows in any shape ``/predict`` takes.

        Refuses what ``/predict`` refuses, and a model without ``predict_proba`` (400).
        """
        return await handle(request, True)

    @app.get("/model", response_model=ModelInfo)
    async def model() -> Response:
        """The version answering predictions: name, version, digest, stage, load time, lineage."""
        info = slot.current.info
        return Response(
            info.model_dump_json(),
            media_type="application/json",
            headers={"x-model-version": str(info.version)},
        )

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """ok, or degraded (still answering with the last good version) and why."""
        return slot.health()

    reload_refusals = {
        401: {"description": "No bearer token, or not the one the server was started with."},
        403: {"description": "The server was started without a reload token: /reload is off."},
    }

    @app.post("/reload", response_model=ReloadResult, responses=reload_refusals)
    async def reload(request: Request) -> Response:
        """Check the registry now; load, verify and swap in a new production version if any.

        Needs ``Authorization: Bearer TOKEN`` with the token the server was started with (401
        otherwise); a server started without one answers 403, saying how to turn it on.
        """
        if reload_token is None:
            polls = f"; the server checks the registry every {poll:g}s anyway" if poll > 0 else ""
            detail = f"POST /reload is off: {TURN_ON}{polls}"
            return _json({"detail": detail, "field": "reload", "problems": []}, 403)
        if not matches(request.headers.get("authorization"), reload_token):
            given = "a wrong token" if request.headers.get("authorization") else "no token"
            detail = f"POST /reload: {given}; send Authorization: Bearer TOKEN, the server's reload token"
            headers = {"www-authenticate": "Bearer"}
            return _json({"detail": detail, "field": "authorization", "problems": []}, 401, None, headers)
        result = await anyio.to_thread.run_sync(partial(slot.refresh, force=True))
        return Response(result.model_dump_json(), media_type="application/json")

    return app


def _answer(served: ServedModel, body: bytes, max_rows: int, *, proba: bool, no_schema: bool) -> Response:
    """Parse, validate and predict: the 200, or a refusal naming what is wrong."""
    info = served.info
    version = info.version
    try:
        request = parse_request(body, max_rows=max_rows)
    except InvalidInput as exc:
        return _refusal(exc, version)
    proba = proba or request.proba
    estimator = served.estimator
    if served.validator.open and not no_schema:
        # A schemaless version swapped in under a server that was not started with --no-schema.
        detail = f"{info.name}/{version}: the version records no input columns; {_NO_SCHEMA_HINT}"
        return _json({"detail": detail, "field": "input_schema", "problems": []}, 503, version)
    if proba and not callable(getattr(estimator, "predict_proba", None)):
        detail = (
            f"{info.name}/{version}: a {type(estimator).__qualname__} has no predict_proba; "
            "ask /predict without proba"
        )
        return _json({"detail": detail, "field": "proba", "problems": []}, 400, version)
    field = request.shape
    try:
        frame = served.validator.to_frame(request.records, max_rows=max_rows, field=field)
        try:
            out = estimator.predict_proba(frame) if proba else estimator.predict(frame)
        except (ValueError, TypeError, OverflowError) as exc:  # OverflowError: a huge int under --no-schema
            raise InvalidInput(
                f"{field}: the model refused the input: {_one_line(exc)}", field=field
            ) from exc
    except InvalidInput as exc:
        return _refusal(exc, version)
    answer: dict[str, Any] = {"model": info.name, "version": version}
    if proba:
        classes = getattr(estimator, "classes_", None)
        answer["classes"] = [] if classes is None else np.asarray(classes).tolist()
    answer["predictions"] = np.asarray(out).tolist()
    return _json(answer, 200, version)


async def _poll_forever(slot: ModelSlot, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await anyio.to_thread.run_sync(slot.refresh)
        except Exception:  # noqa: BLE001 - a dead poller would silently stop hot swaps; log and go on
            EVENTS.exception("registry check of %s failed unexpectedly", slot.name)
