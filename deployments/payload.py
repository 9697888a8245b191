"""Prediction payloads: JSON records checked against a version's stored input schema.

A payload is refused as a whole, before the model sees it, when a record has an unknown or a
missing column or a value of the wrong JSON type; the refusal names every offending column.
The accepted records become a DataFrame with exactly the schema's columns, order and dtypes, so
the model sees what it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from registry import ColumnSpec
from registry.errors import InvalidInput

MAX_ROWS = 10_000
# Row indices listed per problem; the count says how many rows had it in all.
_ROWS_SHOWN = 5
_MISSING = object()


class Kind(StrEnum):
    """The JSON value family a column accepts."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"
    DATETIME = "datetime"


_JSON_NAMES = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
    list: "array",
    dict: "object",
}


class Problem(BaseModel):
    """One thing wrong with a payload, for one column, over one or more rows."""

    model_config = ConfigDict(frozen=True)

    column: str = Field(description="The column concerned.")
    problem: Literal["unknown", "missing", "type"] = Field(
        description="unknown: not in the schema; missing: absent from a record; type: wrong JSON type."
    )
    expected: str | None = Field(default=None, description="The schema dtype (missing and type problems).")
    got: list[str] = Field(default_factory=list, description="JSON types seen (type problems).")
    rows: list[int] = Field(description=f"The first {_ROWS_SHOWN} record indices with the problem.")
    count: int = Field(description="How many records have the problem.")


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    dtype: str
    kind: Kind
    nullable: bool


def column_kind(dtype: str) -> tuple[Kind, bool]:
    """Map a stored pandas dtype name to (JSON kind, whether null is accepted).

    Floats, strings and nullable extension dtypes (``Int64``, ``boolean``) accept null, because
    their dtype can hold a missing value; ``int64`` and ``bool`` cannot, so null is refused.
    Refuses (``InvalidInput``) a dtype it cannot validate, e.g. ``complex128`` or ``timedelta64``.
    """
    d = dtype.strip()
    low = d.lower()
    if low.startswith("float"):
        return Kind.FLOAT, True
    if low.startswith(("int", "uint")):
        return Kind.INT, d[0] in "IU"  # Int64/UInt8 are pandas' nullable integers
    if low in ("bool", "boolean"):
        return Kind.BOOL, low == "boolean"
    if low in ("object", "str", "string", "category") or low.startswith("string["):
        return Kind.STRING, True
    if low.startswith("datetime64"):
        return Kind.DATETIME, True
    raise InvalidInput(f"input schema: dtype {dtype!r} cannot be validated from JSON", field="input_schema")


class InputValidator:
    """Turns JSON records into the DataFrame a model expects, or refuses them naming the columns."""

    def __init__(self, schema: Sequence[ColumnSpec], *, order: Sequence[str] | None = None) -> None:
        """``order`` is the model's own feature order (``feature_names_in_``) when it differs.

        Refuses an empty schema, duplicate columns, an unknown dtype, and an ``order`` that is
        not the same set of columns as the schema.
        """
        if not schema:
            raise InvalidInput("input schema: the version records no input columns", field="input_schema")
        by_name: dict[str, ColumnSpec] = {}
        for spec in schema:
            if spec.name in by_name:
                raise InvalidInput(f"input schema: column {spec.name!r} twice", field="input_schema")
            by_name[spec.name] = spec
        names = list(order) if order is not None else list(by_name)
        if set(names) != set(by_name) or len(names) != len(by_name):
            extra, absent = sorted(set(names) - set(by_name)), sorted(set(by_name) - set(names))
            raise InvalidInput(
                f"input schema does not match the model's features: model-only {extra}, schema-only {absent}",
                field="input_schema",
            )
        self.columns = tuple(_Column(n, by_name[n].dtype, *column_kind(by_name[n].dtype)) for n in names)
        self.names = frozenset(names)

    def to_frame(self, records: Any, *, max_rows: int = MAX_ROWS) -> pd.DataFrame:
        """Validate ``records`` (a non-empty JSON array of objects) and build the DataFrame.

        Refuses with ``InvalidInput`` (``fields["problems"]`` lists ``Problem``s): anything but a
        non-empty list of objects, more than ``max_rows`` records, unknown or missing columns,
        and values whose JSON type the column's dtype does not accept.
        """
        if not isinstance(records, list) or not records:
            raise InvalidInput("records: give a non-empty JSON array of objects", field="records")
        if len(records) > max_rows:
            raise InvalidInput(
                f"records: {len(records)} rows, at most {max_rows} per request", field="records"
            )
        not_objects = [i for i, r in enumerate(records) if type(r) is not dict]
        if not_objects:
            raise InvalidInput(
                f"records: items {not_objects[:_ROWS_SHOWN]} are not JSON objects", field="records"
            )
        problems = self._structure(records)
        columns: dict[str, Any] = {}
        for col in self.columns:
            values = [r.get(col.name, _MISSING) for r in records]
            bad = self._bad_types(col, values)
            if bad is not None:
                problems.append(bad)
            elif not problems:
                columns[col.name] = _array(col, values)
        if problems:
            raise InvalidInput(_summary(problems), field="records", problems=problems)
        return pd.DataFrame(columns, copy=False)

    def _structure(self, records: list[dict[str, Any]]) -> list[Problem]:
        unknown: dict[str, list[int]] = {}
        missing: dict[str, list[int]] = {}
        for i, rec in enumerate(records):
            keys = rec.keys()
            if keys == self.names:  # the common case: one set comparison per record
                continue
            for c in keys - self.names:
                unknown.setdefault(c, []).append(i)
            for c in self.names - keys:
                missing.setdefault(c, []).append(i)
        dtypes = {c.name: c.dtype for c in self.columns}
        out = [
            Problem(column=c, problem="unknown", rows=r[:_ROWS_SHOWN], count=len(r))
            for c, r in unknown.items()
        ]
        out += [
            Problem(column=c, problem="missing", expected=dtypes[c], rows=r[:_ROWS_SHOWN], count=len(r))
            for c, r in missing.items()
        ]
        return sorted(out, key=lambda p: (p.problem, p.column))

    @staticmethod
    def _bad_types(col: _Column, values: list[Any]) -> Problem | None:
        rows: list[int] = []
        seen: set[str] = set()
        for i, v in enumerate(values):
            if v is _MISSING or _accepts(col, v):
                continue
            rows.append(i)
            seen.add(_JSON_NAMES.get(type(v), type(v).__name__))
        if col.kind is Kind.DATETIME and not rows:
            rows = _bad_datetimes(values)
            seen = {"unparseable string"} if rows else seen
        if not rows:
            return None
        return Problem(
            column=col.name,
            problem="type",
            expected=col.dtype,
            got=sorted(seen),
            rows=rows[:_ROWS_SHOWN],
            count=len(rows),
        )


def _accepts(col: _Column, v: Any) -> bool:
    t = type(v)  # exact types: JSON true/false must not pass as the integers 1/0
    if v is None:
        return col.nullable
    if col.kind is Kind.FLOAT:
        return t is float or t is int
    if col.kind is Kind.INT:
        return t is int or (t is float and v.is_integer())
    if col.kind is Kind.BOOL:
        return t is bool
    return t is str  # STRING and DATETIME (parsed afterwards)


def _bad_datetimes(values: list[Any]) -> list[int]:
    strings = [v for v in values if isinstance(v, str)]
    try:
        pd.to_datetime(strings, format="ISO8601")  # the parser _array uses; one call when all parse
        return []
    except ValueError:
        pass
    bad = []
    for i, v in enumerate(values):
        if isinstance(v, str):
            try:
                pd.to_datetime([v], format="ISO8601")
            except ValueError:
                bad.append(i)
    return bad


def _array(col: _Column, values: list[Any]) -> Any:
    if col.kind is Kind.FLOAT:
        return np.array(values, dtype=col.dtype)  # None becomes NaN
    if col.kind in (Kind.INT, Kind.BOOL):
        if col.nullable:
            return pd.array(values, dtype=col.dtype)
        return np.array(values, dtype=col.dtype)
    if col.kind is Kind.DATETIME:
        parsed = pd.to_datetime(values, format="ISO8601", utc="," in col.dtype)  # tz-aware dtype
        return pd.Series(parsed).astype(col.dtype).array
    if col.dtype == "object":
        return np.array(values, dtype=object)
    return pd.array(values, dtype=col.dtype)


def _summary(problems: list[Problem]) -> str:
    parts: list[str] = []
    for kind, label in (
        ("unknown", "unknown columns"),
        ("missing", "missing columns"),
        ("type", "wrong types"),
    ):
        cols = [p for p in problems if p.problem == kind]
        if not cols:
            continue
        if kind == "type":
            names = ", ".join(f"{p.column} (expected {p.expected}, got {'/'.join(p.got)})" for p in cols)
        else:
            names = ", ".join(p.column for p in cols)
        parts.append(f"{label}: {names}")
    return "records: " + "; ".join(parts)
