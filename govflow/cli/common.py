"""Helpers shared by the CLI commands: the registry, output, and KEY=VALUE parsing."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from registry import Registry
from registry.errors import InvalidInput

console = Console()
err_console = Console(stderr=True)


def open_registry() -> Registry:
    """The registry configured by the GOVFLOW_* environment."""
    return Registry()


def emit_json(obj: Any) -> None:
    """Print machine-readable JSON on stdout."""
    if isinstance(obj, BaseModel):
        text = obj.model_dump_json(indent=2)
    elif isinstance(obj, list) and obj and isinstance(obj[0], BaseModel):
        text = json.dumps([o.model_dump(mode="json") for o in obj], indent=2)
    else:
        text = json.dumps(obj, indent=2, default=_default)
    print(text)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def parse_pair_list(values: list[str] | None, option: str) -> list[tuple[str, str]]:
    """Parse repeated ``KEY=VALUE`` options in order, keeping repeated keys."""
    out = []
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{option}: {item!r} must be KEY=VALUE", field=option)
        out.append((key.strip(), value))
    return out


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """Parse repeated ``KEY=VALUE`` options into a mapping; refuse a key given twice."""
    out: dict[str, str] = {}
    for key, value in parse_pair_list(values, option):
        if key in out:
            raise InvalidInput(f"{option}: {key!r} is given twice", field=option)
        out[key] = value
    return out


def parse_param(value: str) -> Any:
    """A param value: JSON scalars (numbers, true/false/null) are typed, the rest stays text."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, str | int | float | bool) or parsed is None else value


def fmt_time(value: datetime | None) -> str:
    """Short UTC time for tables."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
