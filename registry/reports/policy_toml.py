"""A stored policy document as readable TOML, in the form a policy file is written.

The registry keeps policies as canonical JSON (that is what their sha256 covers), with
durations in seconds. An auditor reads TOML like the file that was loaded: each setting with
its description, ``approval_valid_for`` as ``"7d"`` and every duration also in days and hours.
The text loads back (``Policy.load``) to the same document, so the hash beside it still holds.
"""

from __future__ import annotations

import json
import re
from typing import Any

from registry.policy import DriftPolicy, Policy, StageRule
from registry.stages import Stage

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Settings given in seconds; the one the policy loader also reads as "7d", "12h", "30m".
_DURATION_KEYS = frozenset({"approval_valid_for"})
_UNITS = (("d", 86_400, "day"), ("h", 3_600, "hour"), ("m", 60, "minute"), ("s", 1, "second"))


def policy_toml(document: dict[str, Any]) -> str:
    """The policy ``document`` (as stored) as TOML text with comments."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for key, value in _ordered(document, list(Policy.model_fields)):
        if isinstance(value, dict) and value:
            tables.append((key, value))
            continue
        _comment(lines, Policy, key)
        lines.append(_assign(key, value))
    for key, value in tables:
        if key == "stages" and all(isinstance(v, dict) for v in value.values()):
            for stage, rule in _ordered(value, [s.value for s in Stage]):
                lines += [
                    "",
                    f"# What a version needs before it may enter {stage}.",
                    f"[stages.{_key(stage)}]",
                ]
                lines += [_assign(k, v) for k, v in _ordered(rule, list(StageRule.model_fields))]
            continue
        lines += ["", *_description(Policy, key), f"[{_key(key)}]"]
        fields = list(DriftPolicy.model_fields) if key == "drift" else []
        lines += [_assign(k, v) for k, v in _ordered(value, fields)]
    return "\n".join(lines).strip("\n") + "\n"


def human_duration(seconds: int) -> str:
    """``129600`` -> ``1 day 12 hours``; at most two units, the largest first."""
    if seconds <= 0:
        return f"{seconds} seconds"
    parts: list[str] = []
    rest = seconds
    for _, size, word in _UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count} {word}{'' if count == 1 else 's'}")
    return " ".join(parts[:2]) + (" and more" if len(parts) > 2 else "")


def _short_duration(seconds: int) -> str | int:
    """The policy file's own spelling: the largest unit that divides exactly, else seconds."""
    for letter, size, _ in _UNITS[:-1]:
        if seconds % size == 0:
            return f"{seconds // size}{letter}"
    return seconds


def _ordered(mapping: dict[str, Any], known: list[str]) -> list[tuple[str, Any]]:
    """Known keys in declaration order, then any others (an older or newer document) sorted."""
    first = [(k, mapping[k]) for k in known if k in mapping]
    return first + sorted((k, v) for k, v in mapping.items() if k not in known)


def _description(model: type[Any], key: str) -> list[str]:
    field = model.model_fields.get(key)
    text = field.description if field is not None else None
    return [f"# {' '.join(text.split())}"] if text else []


def _comment(lines: list[str], model: type[Any], key: str) -> None:
    if lines:
        lines.append("")
    lines += _description(model, key)


def _assign(key: str, value: Any) -> str:
    if value is None:
        return f"# {_key(key)} is not set"  # TOML has no null; leaving the key out means the same
    if key in _DURATION_KEYS and _is_int(value):
        return f"{_key(key)} = {_value(_short_duration(value))}  # {human_duration(value)}"
    if key.endswith("_seconds") and _is_int(value):
        return f"{_key(key)} = {value}  # {human_duration(value)}"
    return f"{_key(key)} = {_value(value)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A TOML basic string takes JSON's escapes; DEL is the one control JSON leaves raw.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in sorted(value.items()) if v is not None)
        return "{" + (f" {inner} " if inner else "") + "}"
    return json.dumps(str(value), ensure_ascii=False)
