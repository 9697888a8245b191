"""Column types against what a model was trained on: type drift and numbers spoiled by strings.

Pure pandas, used by the data gate (``checks.data``) and the retrain's preflight. Each problem is
one failure record (column, expectation, message, a sample of offending values and their rows),
the same shape the data contract's failures have.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

KINDS = ("int", "float", "number", "bool", "string", "category", "datetime")
SAMPLE_SIZE = 5

# A text column whose values are at least this numeric is a numeric column with stray strings.
MOSTLY_NUMERIC = 0.9


def kind_of(dtype: Any) -> str:
    """The broad kind of a pandas dtype: ``numeric``, ``bool``, ``datetime`` or ``string``."""
    t = pd.api.types
    if t.is_bool_dtype(dtype):
        return "bool"
    if t.is_numeric_dtype(dtype):
        return "numeric"
    if t.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def offending_values(col: pd.Series, expected: str) -> tuple[list[Any], list[Any]]:
    """Up to ``SAMPLE_SIZE`` distinct values of ``col`` that do not fit ``expected``, and their rows.

    ``expected`` is a kind (``int``, ``number``, ``string``…) or a pandas dtype name. For a
    numeric expectation on text, only the values that do not parse as numbers are offending.
    """
    present = col.dropna()
    want = expected if expected in (*KINDS, "numeric") else kind_of(pd.api.types.pandas_dtype(expected))
    observed = kind_of(col.dtype)
    if want in ("int", "float", "number", "numeric") and observed == "string":
        bad = present[pd.to_numeric(present.astype(str), errors="coerce").isna()]
    elif want == "int" and observed == "numeric":
        bad = present[present.astype(float) % 1 != 0]
    else:
        bad = present
    bad = bad.drop_duplicates().head(SAMPLE_SIZE)
    return [plain_value(v) for v in bad.tolist()], [plain_value(i) for i in bad.index.tolist()]


def type_drift(df: pd.DataFrame, reference: Mapping[str, str]) -> list[dict[str, Any]]:
    """Columns whose kind differs from the training reference (column → dtype name).

    A numeric column arriving as text (one stray ``'22.5%'`` is enough) or the reverse is one
    failure record with a sample of the offending values. Columns absent from ``df`` are
    left to the presence checks.
    """
    failures: list[dict[str, Any]] = []
    for column, ref_dtype in reference.items():
        if column not in df.columns:
            continue
        try:
            expected = kind_of(pd.api.types.pandas_dtype(ref_dtype))
        except TypeError:
            expected = "string"
        observed = kind_of(df[column].dtype)
        if observed == expected:
            continue
        sample, rows = offending_values(df[column], expected)
        failures.append(
            failure_record(
                "type_drift",
                column,
                f"column {column!r} arrived as {observed} ({df[column].dtype}), trained as {expected} "
                f"({ref_dtype})",
                expected=ref_dtype,
                observed=str(df[column].dtype),
                sample=sample,
                sample_rows=rows,
            )
        )
    return failures


def stray_strings(df: pd.DataFrame, skip: Iterable[str] = (), mostly: float = MOSTLY_NUMERIC) -> list[dict]:
    """Text columns whose values are mostly numbers: a numeric column spoiled by a few strings.

    Without this, one ``'n/a'``-like value turns a numeric column into a one-hot categorical
    and the model trains on it silently. Columns in ``skip`` (declared as text) are left alone.
    """
    failures: list[dict[str, Any]] = []
    for column in df.columns:
        col = df[column]
        if column in skip or kind_of(col.dtype) != "string":
            continue
        present = col.dropna()
        if present.empty:
            continue
        numeric = pd.to_numeric(present.astype(str), errors="coerce").notna()
        share = float(numeric.mean())
        if mostly <= share < 1:
            sample, rows = offending_values(col, "number")
            failures.append(
                failure_record(
                    "numeric_with_strays",
                    str(column),
                    f"column {column!r} is {share:.1%} numbers but {int((~numeric).sum())} values are "
                    "not: it would be trained as a category",
                    observed=str(col.dtype),
                    unexpected_count=int((~numeric).sum()),
                    sample=sample,
                    sample_rows=rows,
                )
            )
    return failures


def plain_value(value: Any) -> Any:
    """A numpy scalar as the Python value JSON evidence can hold."""
    return value.item() if hasattr(value, "item") else value


def failure_record(expectation: str, column: str | None, message: str, **extra: Any) -> dict[str, Any]:
    """One failed check as the data gate reports it: column, expectation, message and extras."""
    return {"column": column, "expectation": expectation, "message": message, **extra}
