"""Request shapes of ``/predict``: ours, and MLflow's scoring-server shapes.

A body carries its rows in exactly one shape: ``records`` (ours), MLflow's
``dataframe_records``, ``dataframe_split`` (``{columns, data, index?}``), ``instances`` or
``inputs`` (a list of objects, or an object of equal-length columns), or a bare array of
objects; ``"proba": true`` asks for class probabilities. Every shape becomes the same list of
records, which ``InputValidator.to_frame`` then checks, so no shape is a way around the checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployments.payload import _DECODER, _ROWS_SHOWN, MAX_ROWS, _json_name
from registry.errors import InvalidInput

SHAPES = ("records", "dataframe_records", "dataframe_split", "instances", "inputs")
_OPTIONS = frozenset({"proba"})


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A parsed ``/predict`` body: the rows as records, the shape they came in, and whether
    probabilities were asked for."""

    records: Any
    shape: str
    proba: bool = False


def parse_body(body: bytes) -> Any:
    """The records of a ``/predict`` body in any accepted shape (see ``parse_request``)."""
    return parse_request(body).records


def parse_request(body: bytes, *, max_rows: int = MAX_ROWS) -> ParsedRequest:
    """Decode a ``/predict`` body: exactly one of ``SHAPES`` (or a bare array) and ``proba``.

    Refuses (``InvalidInput``, one line): bytes that are not UTF-8, text that is not JSON,
    nesting deeper than the parser's recursion limit, no shape or two shapes (naming both),
    unknown keys, a ``proba`` that is not true/false, and a ``dataframe_split`` or columnar
    ``instances``/``inputs`` that is malformed (ragged rows, column names that are not unique
    strings, columns of different lengths) or longer than ``max_rows``. The records themselves
    are checked by ``InputValidator.to_frame``.
    """
    try:
        payload = _DECODER.decode(body.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"body: not UTF-8 ({exc.reason} at byte {exc.start})", field="body") from None
    except ValueError as exc:
        raise InvalidInput(f"body: not valid JSON ({exc})", field="body") from None
    except RecursionError:
        # Records are three levels deep; anything this deep is not a payload.
        raise InvalidInput("body: JSON nested too deeply", field="body") from None
    if not isinstance(payload, dict):
        return ParsedRequest(payload, "records")
    shapes = [k for k in SHAPES if k in payload]
    extra = sorted(str(k) for k in payload if k not in SHAPES and k not in _OPTIONS)
    if extra:
        raise InvalidInput(
            f"body: unexpected keys {', '.join(extra)}; give one of {', '.join(SHAPES)}", field="body"
        )
    if len(shapes) != 1:
        got = f"got both {' and '.join(shapes)}" if shapes else "got none"
        raise InvalidInput(f"body: give exactly one of {', '.join(SHAPES)}; {got}", field="body")
    proba = payload.get("proba", False)
    if type(proba) is not bool:
        raise InvalidInput(f"proba: {_json_name(proba)}, give true or false", field="proba")
    shape = shapes[0]
    rows = payload[shape]
    if shape == "dataframe_split":
        rows = _split_records(rows, max_rows)
    elif shape in ("instances", "inputs") and isinstance(rows, dict):
        rows = _columnar_records(rows, shape, max_rows)
    return ParsedRequest(rows, shape, proba)


def _split_records(split: Any, max_rows: int) -> list[dict[str, Any]]:
    """``{"columns": [...], "data": [[...], ...], "index": [...]}`` as records (index ignored)."""
    field = "dataframe_split"
    if not isinstance(split, dict):
        raise InvalidInput(f'{field}: give {{"columns": [...], "data": [[...], ...]}}', field=field)
    extra = sorted(str(k) for k in split if k not in ("columns", "data", "index"))
    if extra or "columns" not in split or "data" not in split:
        what = f"unexpected keys {', '.join(extra)}" if extra else "columns and data are required"
        raise InvalidInput(f"{field}: {what}", field=field)
    columns, data = split["columns"], split["data"]
    if not isinstance(columns, list) or not columns or any(type(c) is not str for c in columns):
        raise InvalidInput(f"{field}.columns: give a non-empty array of column names", field=field)
    if len(set(columns)) != len(columns):
        twice = sorted({c for c in columns if columns.count(c) > 1})
        raise InvalidInput(f"{field}.columns: {', '.join(twice)} given twice", field=field)
    if not isinstance(data, list) or not data:
        raise InvalidInput(f"{field}.data: give a non-empty array of rows", field=field)
    if len(data) > max_rows:
        raise InvalidInput(f"{field}.data: {len(data)} rows, at most {max_rows} per request", field=field)
    width = len(columns)
    ragged = [i for i, row in enumerate(data) if type(row) is not list or len(row) != width]
    if ragged:
        raise InvalidInput(
            f"{field}.data: rows {ragged[:_ROWS_SHOWN]} are not arrays of {width} values"
            f" ({len(ragged)} rows in all)",
            field=field,
        )
    index = split.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise InvalidInput(f"{field}.index: give one label per data row ({len(data)})", field=field)
    return [dict(zip(columns, row, strict=True)) for row in data]


def _columnar_records(columns: dict[Any, Any], field: str, max_rows: int) -> list[dict[str, Any]]:
    """``{"col": [v, ...], ...}`` (TF-serving's columnar form) as records."""
    bad = [str(k) for k, v in columns.items() if type(v) is not list]
    if not columns or bad:
        raise InvalidInput(f"{field}: give an array of objects or an object of column arrays", field=field)
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"{k}: {n}" for k, n in list(lengths.items())[:_ROWS_SHOWN])
        raise InvalidInput(f"{field}: columns have different lengths ({shown})", field=field)
    n = next(iter(lengths.values()))
    if n > max_rows:
        raise InvalidInput(f"{field}: {n} rows, at most {max_rows} per request", field=field)
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
