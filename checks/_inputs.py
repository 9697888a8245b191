"""Input coercion shared by the gates; every refusal is an ``InvalidInput`` naming the field."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from registry.errors import InvalidInput


def as_1d(values: Any, field: str) -> np.ndarray:
    """``values`` as a non-empty 1-D array; refuses scalars, 2-D input and empty input."""
    if isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            raise InvalidInput(f"{field} must be one column, got {values.shape[1]}", field=field)
        values = values.iloc[:, 0]
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInput(f"{field} must be 1-D, got shape {arr.shape}", field=field)
    if arr.size == 0:
        raise InvalidInput(f"{field} is empty", field=field)
    return arr


def as_scores(values: Any, field: str) -> np.ndarray:
    """Finite float scores, 1-D (one score per row) or 2-D (one column per class)."""
    arr = values.to_numpy() if isinstance(values, pd.Series | pd.DataFrame) else np.asarray(values)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise InvalidInput(f"{field} must be non-empty 1-D or 2-D, got {arr.shape}", field=field)
    try:
        arr = arr.astype(float, copy=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{field} must be numeric: {exc}", field=field) from exc
    if not np.isfinite(arr).all():
        raise InvalidInput(f"{field} contains NaN or infinite values", field=field)
    return arr


def no_missing(arr: np.ndarray, field: str) -> np.ndarray:
    """``arr`` unchanged; refuses NaN/None in it (labels and groups must be known)."""
    if pd.isna(arr).any():
        raise InvalidInput(f"{field} contains missing values", field=field)
    return arr


def same_length(**arrays: Any) -> int:
    """The common length of the arrays; refuses mismatched lengths, naming them all."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise InvalidInput(f"length mismatch: {shown}", field=next(iter(lengths)))
    return next(iter(lengths.values()))


def finite_or_none(value: float | None, field: str) -> float | None:
    """A finite float threshold or None; refuses NaN, inf and non-numbers."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{field} must be a number, got {value!r}", field=field) from exc
    if not math.isfinite(f):
        raise InvalidInput(f"{field} must be finite, got {value!r}", field=field)
    return f
