"""Prediction payloads: JSON records checked against a version's stored input schema.

Every request shape (``deployments.shapes``) becomes records and meets these same checks.
A payload is refused as a whole, before the model sees it, when it is not UTF-8 JSON, when a
record has an unknown or a missing column, a value of the wrong JSON type (NaN and Infinity are
not JSON), or a number the column's dtype cannot hold; the refusal names every offending column.
The accepted records become a DataFrame with exactly the schema's columns, order and dtypes, so
the model sees what it was trained on. A version without a schema is served only when the
server was started with ``--no-schema``: rows must then share one set of keys and hold JSON
scalars, and become a DataFrame of those keys.
"""

from __future__ import annotations

import json
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
    problem: Literal["unknown", "missing", "type", "range"] = Field(
        description=(
            "unknown: not in the schema; missing: absent from a record; type: wrong JSON type;"
            " range: a number the column's dtype cannot hold (too large, or not finite)."
        )
    )
    expected: str | None = Field(
        default=None, description="The schema dtype (missing, type and range problems)."
    )
    got: list[str] = Field(default_factory=list, description="JSON types seen (type and range problems).")
    rows: list[int] = Field(description=f"The first {_ROWS_SHOWN} record indices with the problem.")
    count: int = Field(description="How many records have the problem.")


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    dtype: str
    kind: Kind
    nullable: bool
    low: float | int | None = None  # numeric kinds: the values the dtype holds, bounds included
    high: float | int | None = None


class _Literal:
    """A ``NaN``/``Infinity`` literal: Python's parser takes them, JSON has no such values, so
    they stay as a value every column refuses, named in the problem."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_DECODER = json.JSONDecoder(parse_constant=_Literal)


def _bounds(kind: Kind, dtype: str) -> tuple[float | int | None, float | int | None]:
    """The smallest and largest value a numeric dtype holds; (None, None) when numpy does not know it."""
    try:
        if kind is Kind.INT:
            info = np.iinfo(dtype.lower())
            return int(info.min), int(info.max)
        if kind is Kind.FLOAT:
            top = float(np.finfo(dtype.lower()).max)
            return -top, top
    except (TypeError, ValueError):
        pass
    return None, None


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

        An empty schema builds an open validator (``open`` is true) that only passes rows
        through; a server uses it only when started with ``--no-schema``. Refuses duplicate
        columns, an unknown dtype, and an ``order`` that is not the same set as the schema.
        """
        self.open = not schema
        self.order = None if order is None else tuple(order)
        if self.open:
            self.columns: tuple[_Column, ...] = ()
            self.names: frozenset[str] = frozenset()
            return
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
        self.columns = tuple(_column(n, by_name[n].dtype) for n in names)
        self.names = frozenset(names)

    def to_frame(self, records: Any, *, max_rows: int = MAX_ROWS, field: str = "records") -> pd.DataFrame:
        """Validate ``records`` (a non-empty JSON array of objects) and build the DataFrame.

        Refuses with ``InvalidInput`` (``fields["problems"]`` lists ``Problem``s): anything but a
        non-empty list of objects, more than ``max_rows`` records, unknown or missing columns,
        values whose JSON type the column's dtype does not accept, and numbers it cannot hold.
        ``field`` is the request shape the records came in, named by every refusal.
        """
        if not isinstance(records, list) or not records:
            raise InvalidInput(f"{field}: give a non-empty JSON array of objects", field=field)
        if len(records) > max_rows:
            raise InvalidInput(f"{field}: {len(records)} rows, at most {max_rows} per request", field=field)
        not_objects = [i for i, r in enumerate(records) if type(r) is not dict]
        if not_objects:
            raise InvalidInput(
                f"{field}: items {not_objects[:_ROWS_SHOWN]} are not JSON objects", field=field
            )
        if self.open:
            return self._passthrough(records, field)
        problems = self._structure(records)
        # A column absent from some record has no array to build: its problem is already named.
        absent = {p.column for p in problems if p.problem == "missing"}
        columns: dict[str, Any] = {}
        for col in self.columns:
            values = [r.get(col.name, _MISSING) for r in records]
            bad = self._bad_types(col, values)
            if bad is None and col.name not in absent:
                array, bad = _build(col, values, field)
            if bad is not None:
                problems.append(bad)
            elif not problems:
                columns[col.name] = array
        if problems:
            raise InvalidInput(_summary(problems, field), field=field, problems=problems)
        return pd.DataFrame(columns, copy=False)

    def _passthrough(self, records: list[dict[str, Any]], field: str) -> pd.DataFrame:
        """No schema: the rows' own keys (the same in every row), JSON scalars only."""
        first = records[0].keys()
        problems = self._structure(records, frozenset(first))  # rows after the first must match it
        for name in first:
            rows, seen = [], set()
            for i, r in enumerate(records):
                v = r.get(name)
                if type(v) not in (str, int, float, bool) and v is not None:
                    rows.append(i)
                    seen.add(_json_name(v))
            if rows:
                problems.append(
                    Problem(
                        column=name,
                        problem="type",
                        expected="a JSON scalar",
                        got=sorted(seen),
                        rows=rows[:_ROWS_SHOWN],
                        count=len(rows),
                    )
                )
        if problems:
            raise InvalidInput(_summary(problems, field), field=field, problems=problems)
        frame = pd.DataFrame.from_records(records, columns=list(first))
        if self.order is not None and set(self.order) == set(first):
            frame = frame[list(self.order)]  # the model's own feature order
        return frame

    def _structure(self, records: list[dict[str, Any]], names: frozenset[str] | None = None) -> list[Problem]:
        names = self.names if names is None else names
        unknown: dict[str, list[int]] = {}
        missing: dict[str, list[int]] = {}
        for i, rec in enumerate(records):
            keys = rec.keys()
            if keys == names:  # the common case: one set comparison per record
                continue
            for c in keys - names:
                unknown.setdefault(c, []).append(i)
            for c in names - keys:
                missing.setdefault(c, []).append(i)
        dtypes = {c.name: c.dtype for c in self.columns}
        out = [
            Problem(column=c, problem="unknown", rows=r[:_ROWS_SHOWN], count=len(r))
            for c, r in unknown.items()
        ]
        out += [
            Problem(column=c, problem="missing", expected=dtypes.get(c), rows=r[:_ROWS_SHOWN], count=len(r))
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
            seen.add(_json_name(v))
        if col.kind is Kind.DATETIME and not rows:
            rows = _bad_datetimes(values)
            seen = {"unparseable string"} if rows else seen
        return _problem(col, "type", rows, seen) if rows else None


def _problem(col: _Column, problem: Literal["type", "range"], rows: list[int], seen: set[str]) -> Problem:
    return Problem(
        column=col.name,
        problem=problem,
        expected=col.dtype,
        got=sorted(seen),
        rows=rows[:_ROWS_SHOWN],
        count=len(rows),
    )


def _build(col: _Column, values: list[Any], field: str = "records") -> tuple[Any, Problem | None]:
    """The column's array, or the problem naming the rows whose numbers the dtype cannot hold.

    Range is checked only when numpy refuses to convert (the fast path stays one C call).
    """
    try:
        return _array(col, values), None
    except (OverflowError, TypeError, ValueError) as exc:
        error = exc
    rows = [i for i, v in enumerate(values) if v is not _MISSING and v is not None and not _in_range(col, v)]
    if not rows:
        detail = " ".join(str(error).split())
        raise InvalidInput(
            f"{field}: column {col.name}: cannot be read as {col.dtype}: {detail}", field=field
        )
    return None, _problem(col, "range", rows, {_json_name(values[i]) for i in rows})


def _column(name: str, dtype: str) -> _Column:
    kind, nullable = column_kind(dtype)
    return _Column(name, dtype, kind, nullable, *_bounds(kind, dtype))


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


def _in_range(col: _Column, v: Any) -> bool:
    """Whether a number fits the column's dtype; exact for any int size, false for inf."""
    return col.low is None or col.low <= v <= col.high  # type: ignore[operator]


def _out_of_range(col: _Column, values: list[Any]) -> bool:
    return any(v is not None and not _in_range(col, v) for v in values)


def _json_name(v: Any) -> str:
    if type(v) is _Literal:
        return v.text
    return _JSON_NAMES.get(type(v), type(v).__name__)


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
    """Convert accepted values; raises OverflowError when a number does not fit the dtype."""
    if col.kind is Kind.FLOAT:
        wide = np.array(values, dtype=np.float64)  # None becomes NaN; an int beyond float64 raises
        if col.dtype == "float64":
            if np.isinf(wide).any():  # 1e400 parses as inf
                raise OverflowError(f"a value beyond {col.dtype}")
            return wide
        # A narrower dtype would turn a large finite value into inf.
        if col.high is not None and not (np.abs(wide[~np.isnan(wide)]) <= col.high).all():
            raise OverflowError(f"a value beyond {col.dtype}")
        if col.dtype[0] == "F":  # pandas' nullable Float32/Float64: None stays missing
            return pd.array(values, dtype=col.dtype)
        return np.array(values, dtype=col.dtype)
    if col.kind in (Kind.INT, Kind.BOOL):
        if col.nullable:
            # pandas turns an integral float beyond the dtype into garbage rather than raising.
            if col.kind is Kind.INT and _out_of_range(col, values):
                raise OverflowError(f"a value beyond {col.dtype}")
            return pd.array(values, dtype=col.dtype)
        return np.array(values, dtype=col.dtype)  # raises OverflowError beyond the dtype
    if col.kind is Kind.DATETIME:
        parsed = pd.to_datetime(values, format="ISO8601", utc="," in col.dtype)  # tz-aware dtype
        return pd.Series(parsed).astype(col.dtype).array
    if col.dtype == "object":
        return np.array(values, dtype=object)
    return pd.array(values, dtype=col.dtype)


def _summary(problems: list[Problem], field: str = "records") -> str:
    parts: list[str] = []
    for kind, label in (
        ("unknown", "unknown columns"),
        ("missing", "missing columns"),
        ("type", "wrong types"),
        ("range", "out of range"),
    ):
        cols = [p for p in problems if p.problem == kind]
        if not cols:
            continue
        if kind in ("type", "range"):
            names = ", ".join(f"{p.column} (expected {p.expected}, got {'/'.join(p.got)})" for p in cols)
        else:
            names = ", ".join(p.column for p in cols)
        parts.append(f"{label}: {names}")
    return f"{field}: " + "; ".join(parts)
