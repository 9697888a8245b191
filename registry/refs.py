"""Parsing version references: ``name/3`` and ``name@alias``."""

from __future__ import annotations

from typing import Any

from registry.errors import InvalidInput
from registry.validate import check_name, parse_version


def parse_ref(ref: Any) -> tuple[str, int | None, str | None]:
    """Split a reference into (name, version, alias); exactly one of version/alias is set."""
    if not isinstance(ref, str):
        raise InvalidInput(
            f"reference: {ref!r} must be a string NAME/VERSION or NAME@ALIAS", field="reference"
        )
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return check_name(name), None, check_name(alias, "alias")
    if "/" in ref:
        name, number = ref.rsplit("/", 1)
        check_name(name)
        return name, parse_version(number), None
    raise InvalidInput(f"reference: {ref!r} must be NAME/VERSION or NAME@ALIAS", field="reference")
