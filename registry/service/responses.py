"""JSON responses built straight from the registry's pydantic entities (no second validation)."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic_core import to_json


def ok(obj: Any, status: int = 200) -> Response:
    """``obj`` (entities, lists of them, plain JSON) as an ``application/json`` response."""
    return Response(content=to_json(obj), status_code=status, media_type="application/json")
