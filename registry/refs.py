"""Parsing version references: ``name/3`` and ``name@alias``."""

from __future__ import annotations

from registry.entities import check_name
from registry.errors import InvalidInput


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """Split a reference into (name, version, alias); exactly one of version/alias is set."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return check_name(name), None, check_name(alias, "alias")
    if "/" in ref:
        name, number = ref.rsplit("/", 1)
        check_name(name)
        if not number.isdigit() or int(number) < 1:
            raise InvalidInput(f"version: {number!r} is not a positive integer", field="version")
        return name, int(number), None
    raise InvalidInput(f"reference: {ref!r} must be NAME/VERSION or NAME@ALIAS", field="reference")
