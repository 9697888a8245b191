"""Request size limits the HTTP layer alone can enforce: JSON bodies are read whole, so cap them."""

from __future__ import annotations

import os
from typing import Any

from registry.errors import InvalidInput
from registry.service import problem

DEFAULT_MAX_JSON = 16 * 1024 * 1024  # 16 MiB; artifacts go through /api/v1/blobs, which streams
BLOBS = "/api/v1/blobs/"


def max_json() -> int:
    """GOVFLOW_SERVER_MAX_JSON in bytes (default 16 MiB); refuses anything but a positive integer."""
    raw = os.environ.get("GOVFLOW_SERVER_MAX_JSON", "").strip()
    if not raw:
        return DEFAULT_MAX_JSON
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput(
            f"GOVFLOW_SERVER_MAX_JSON: {raw!r} is not a positive number of bytes",
            field="GOVFLOW_SERVER_MAX_JSON",
        )
    return int(raw)


def _too_large(cap: int) -> InvalidInput:
    return InvalidInput(
        f"body: the request body is larger than the server's limit of {cap} bytes", field="body"
    )


class BodyLimit:
    """ASGI middleware: a body over the cap is a 413, declared (refused unread) or streamed (cut off)."""

    def __init__(self, app: Any, cap: int) -> None:
        self.app = app
        self.cap = cap

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(BLOBS):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.cap:
                await problem.from_error(_too_large(self.cap), 413)(scope, receive, send)
                return
        seen = 0
        over = False
        answered = False

        async def counted() -> Any:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.cap:
                    over = True  # the app sees the client go away; the answer is ours
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Any) -> None:
            nonlocal answered
            if not over:
                await send(message)
            elif not answered:
                answered = True
                await problem.from_error(_too_large(self.cap), 413)(scope, receive, send)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not answered:
            await problem.from_error(_too_large(self.cap), 413)(scope, receive, send)
