"""Canonical JSON: sorted keys, UTF-8, no insignificant whitespace, finite numbers only.

The audit chain hashes it, and every JSON column is stored in it, so what is stored and what is
hashed are the same text.
"""

from __future__ import annotations

import json
from typing import Any

_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def canonical_text(obj: Any) -> str:
    """Canonical JSON as text."""
    return _ENCODE(obj)


def canonical(obj: Any) -> bytes:
    """Canonical JSON as UTF-8 bytes."""
    return _ENCODE(obj).encode("utf-8")
