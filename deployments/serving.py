"""The serving app: the production version of one model behind FastAPI, hot-swapped in place.

- ``POST /predict``: rows in any accepted request shape (``deployments.shapes``: ours and
  MLflow's), validated against the served version's input schema; the answer names the
  version that made it. ``"proba": true`` or ``POST /predict_proba`` answers probabilities.
- ``GET /model``, ``GET /health``: what is served, and whether it is what the registry says.
- ``POST /reload``: check the registry now. It cannot choose what is loaded (the registry
  decides), so it needs no credentials beyond reaching the port.
- A background poll does the same check every ``poll`` seconds: one indexed query, no artifact
  I/O unless the production version changed.
- Every request is logged as one JSON line (method, path, status, version, latency).
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.logs import EVENTS, REQUESTS, log_json
from deployments.model_slot import ModelSlot, ServedModel, _one_line
from deployments.payload import MAX_ROWS
from deployments.schemas import Health, ModelInfo, PredictResponse, ReloadResult
from deployments.shapes import parse_request
from registry import Registry
from registry.errors import InvalidInput

MAX_BODY_BYTES = 16 * 1024 * 1024
# Bodies up to this size (a few hundred rows) are answered on the event loop; larger ones in a thread.
INLINE_BYTES = 64 * 1024
_VERSION_HEADER = b"x-model-version"


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

        try:
            await self.app(scope, receive, capture)
        finally:
            log_json(
                REQUESTS,
                method=scope["method"],
                path=scope["path"],
                status=status,
                model=self.model,
                version=version,
                latency_ms=round((perf_counter() - start) * 1000, 3),
            )


def _json(body: Any, status: int = 200, version: int | None = None) -> Response:
    headers = {"x-model-version": str(version)} if version is not None else None
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


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it exceeds ``limit`` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


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
    inline_bytes: int = INLINE_BYTES,
) -> FastAPI:
    """Build the app serving ``name@production``; the version is loaded and verified here.

    Refuses to build (the registry's error) when nothing is in production or the production
    version cannot be loaded safely. ``poll <= 0`` turns the background check off, leaving
    ``POST /reload``. ``actor`` is who the server's audit events name. Bodies above
    ``inline_bytes`` are parsed and predicted in a worker thread, smaller ones on the loop.
    A version that records no input schema is refused (``InvalidInput``) unless ``no_schema``,
    which passes rows through as a DataFrame of their own keys; a version with a schema is
    always checked against it.
    """
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
        body = await _read_body(request, max_body_bytes)
        if body is None:
            detail = {"detail": f"body: larger than {max_body_bytes} bytes", "field": "body", "problems": []}
            return _json(detail, 413, served.info.version)
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

    @app.post("/reload", response_model=ReloadResult)
    async def reload() -> ReloadResult:
        """Check the registry now; load, verify and swap in a new production version if any."""
        return await anyio.to_thread.run_sync(partial(slot.refresh, force=True))

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
