"""Listing arguments: page size, filters and page tokens, checked before any query runs.

A page token is opaque to callers: it names the listing it belongs to (versions of one model, or
models), the last key of the page it ends and a digest of the filters, with a checksum. A token
that was edited, made up, or issued for another model or other filters is refused in one line.
The checksum is not a secret: a token only says where a listing resumes, which a reader could
ask for anyway, so a forged but well-formed token grants nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from registry.errors import InvalidInput
from registry.stages import Stage
from registry.validate import check_name

MAX_LIMIT = 10_000
MAX_TOKEN = 512  # characters; a real token is well under 200
OPERATORS = (">=", "<=", ">", "<", "=")
_METRIC = re.compile(r"\s*(?P<key>[^<>=\s]+)\s*(?P<op>>=|<=|>|<|=)\s*(?P<value>[^<>=\s]+)\s*")
# Keys end up in JSON paths (SQLite '$."key"'): quotes, backslashes and controls are refused.
_KEY = re.compile(r"[^\"\\\x00-\x1f\x7f=]{1,128}")
_SALT = b"govflow.page-token.v1\x00"


def check_limit(limit: Any) -> int | None:
    """``limit`` as an int from 1 to 10000, or None (everything); refuse strings, bools, floats."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit: {limit!r} must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    return limit


@dataclass(frozen=True)
class Filters:
    """What a listing keeps: all conditions must hold for the same version."""

    stage: Stage | None = None
    alias: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    metrics: tuple[tuple[str, str, float], ...] = field(default=())

    @property
    def empty(self) -> bool:
        return self.stage is None and self.alias is None and not self.tags and not self.metrics

    def digest(self) -> str:
        """A short digest that ties a page token to these filters."""
        doc = [self.stage.value if self.stage else None, self.alias, list(self.tags), list(self.metrics)]
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def as_query(self) -> dict[str, Any]:
        """The filters as HTTP query parameters (what ``parse_filters`` reads back)."""
        q: dict[str, Any] = {}
        if self.stage is not None:
            q["stage"] = self.stage.value
        if self.alias is not None:
            q["alias"] = self.alias
        if self.tags:
            q["tag"] = [f"{k}={v}" for k, v in self.tags]
        if self.metrics:
            q["metric"] = [f"{k}{op}{v!r}" for k, op, v in self.metrics]
        return q


def _key(key: Any, option: str, text: Any) -> str:
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise InvalidInput(
            f"{option}: {text!r} has a bad key (1 to 128 characters, no quotes, backslashes, '=' or "
            "control characters)",
            field=option,
        )
    return key


def _tags(tags: Any) -> tuple[tuple[str, str], ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = [tags]
    pairs: list[tuple[Any, Any]] = []
    if isinstance(tags, Mapping):
        pairs = list(tags.items())
    elif isinstance(tags, Sequence):
        for item in tags:
            if not isinstance(item, str) or "=" not in item:
                raise InvalidInput(f"tag: {item!r} must be KEY=VALUE", field="tag")
            key, _, value = item.partition("=")
            pairs.append((key, value))
    else:
        raise InvalidInput(f"tag: {tags!r} must be KEY=VALUE pairs", field="tag")
    out: dict[str, str] = {}
    for key, value in pairs:
        _key(key, "tag", f"{key}={value}")
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidInput(f"tag: the value of {key!r} must be a string without NUL", field="tag")
        if key in out and out[key] != value:
            raise InvalidInput(f"tag: {key!r} is given twice with different values", field="tag")
        out[key] = value
    return tuple(sorted(out.items()))


def _metrics(metrics: Any) -> tuple[tuple[str, str, float], ...]:
    if metrics is None:
        return ()
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, Sequence):
        raise InvalidInput(f"metric: {metrics!r} must be conditions like 'auc>=0.8'", field="metric")
    out = []
    for text in metrics:
        m = _METRIC.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise InvalidInput(
                f"metric: {text!r} must be NAME OP NUMBER, OP one of {' '.join(OPERATORS)} (e.g. 'auc>=0.8')",
                field="metric",
            )
        key = _key(m["key"], "metric", text)
        try:
            value = float(m["value"])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InvalidInput(f"metric: {text!r}: {m['value']!r} is not a finite number", field="metric")
        out.append((key, m["op"], value))
    return tuple(sorted(set(out)))


def parse_filters(stage: Any = None, alias: Any = None, tags: Any = None, metrics: Any = None) -> Filters:
    """Check and normalize listing filters; refuse a bad one naming it (stage, alias, tag, metric)."""
    st: Stage | None = None
    if stage is not None:
        try:
            st = Stage(stage.value if isinstance(stage, Stage) else stage)
        except ValueError:
            known = ", ".join(s.value for s in Stage)
            raise InvalidInput(f"stage: {stage!r} is not a stage ({known})", field="stage") from None
    if alias is not None:
        check_name(alias, "alias")
    return Filters(stage=st, alias=alias, tags=_tags(tags), metrics=_metrics(metrics))


# --- page tokens ----------------------------------------------------------------------------


def _sum(payload: bytes) -> str:
    return hashlib.sha256(_SALT + payload).hexdigest()[:16]


def make_token(scope: str, last: int | str, filters: Filters) -> str:
    """The token of the page after the one that ended at ``last``."""
    payload = json.dumps([scope, last, filters.digest()], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _sum(payload)


def _refuse(why: str) -> InvalidInput:
    return InvalidInput(f"page_token: {why}", field="page_token")


def read_token(token: Any, scope: str, filters: Filters) -> Any:
    """The last key of the previous page; refuse a token not issued for this listing."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        raise _refuse("not a page token this registry issued")
    body, dot, check = token.rpartition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)) if dot else b""
        doc = json.loads(payload) if payload else None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        doc = None
    if not hmac.compare_digest(check.encode(), _sum(payload).encode()) or not (
        isinstance(doc, list) and len(doc) == 3 and isinstance(doc[0], str) and isinstance(doc[2], str)
    ):
        raise _refuse("not a page token this registry issued (edited or made up)")
    if doc[0] != scope:
        raise _refuse(
            f"the token belongs to another listing ({_scope_name(doc[0])}), not {_scope_name(scope)}"
        )
    if doc[2] != filters.digest():
        raise _refuse("the token was issued for other filters; give the same filters or start without it")
    last = doc[1]
    if scope.startswith("versions:"):
        if isinstance(last, bool) or not isinstance(last, int) or last < 1:
            raise _refuse("not a page token this registry issued (bad position)")
    elif not isinstance(last, str):
        raise _refuse("not a page token this registry issued (bad position)")
    return last


def _scope_name(scope: str) -> str:
    return f"versions of {scope.split(':', 1)[1]!r}" if scope.startswith("versions:") else scope
