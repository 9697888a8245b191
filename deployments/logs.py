"""Structured serving logs: one JSON object per line, for requests and for slot events."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

# Requests and slot events (swap, degraded, recovered) share the parent, so one handler gets both.
EVENTS = logging.getLogger("govflow.serving")
REQUESTS = logging.getLogger("govflow.serving.requests")


def log_json(logger: logging.Logger, level: int = logging.INFO, /, **fields: Any) -> None:
    """Emit ``fields`` plus a UTC timestamp as one compact JSON line (when the level is enabled)."""
    if logger.isEnabledFor(level):
        line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}
        logger.log(level, json.dumps(line, separators=(",", ":"), default=str))


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send serving logs, message only, to ``stream`` (stdout); idempotent. For the CLI server."""
    if any(getattr(h, "_govflow", False) for h in EVENTS.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._govflow = True  # type: ignore[attr-defined]
    EVENTS.addHandler(handler)
    EVENTS.setLevel(level)
    EVENTS.propagate = False  # the lines are already JSON; a root handler would wrap them again
