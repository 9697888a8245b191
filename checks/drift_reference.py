"""The drift reference: per-feature distributions of the training data, stored as JSON.

It is fitted once, at registration, and stored with the model version, because PSI depends on
the bins: scoring new data against stored edges keeps every later comparison on the same scale.
Numeric features keep decile bin edges, bin shares, the missing rate and 101 percentiles (for
the small-sample KS); categorical features keep category shares and the missing rate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, model_validator

from registry.errors import InvalidInput

OTHER = "<other>"


class NumericReference(BaseModel):
    """Reference distribution of one numeric feature."""

    kind: Literal["numeric"] = Field(default="numeric", description="Feature kind.")
    edges: list[float] = Field(
        description="Interior bin edges, strictly increasing; bins are "
        "(-inf, e0], (e0, e1], …, (e_last, +inf)."
    )
    frequencies: list[float] = Field(description="Share of non-missing values per bin.")
    nan_rate: float = Field(ge=0, le=1, description="Share of missing values.")
    n: int = Field(gt=0, description="Rows the reference was fitted on.")
    percentiles: list[float] = Field(description="0th..100th percentiles, for the small-n KS.")

    @model_validator(mode="after")
    def _consistent(self) -> NumericReference:
        e = np.asarray(self.edges, dtype=float)
        if not np.isfinite(e).all() or (np.diff(e) <= 0).any():
            raise ValueError("edges must be finite and strictly increasing")
        _check_shares(self.frequencies, len(self.edges) + 1)
        if len(self.percentiles) != 101 or (np.diff(self.percentiles) < 0).any():
            raise ValueError("percentiles must be 101 non-decreasing values")
        return self


class CategoricalReference(BaseModel):
    """Reference distribution of one categorical feature."""

    kind: Literal["categorical"] = Field(default="categorical", description="Feature kind.")
    frequencies: dict[str, float] = Field(
        description="Share of non-missing values per category (most frequent ones); "
        f"'{OTHER}' holds the share of the rest."
    )
    nan_rate: float = Field(ge=0, le=1, description="Share of missing values.")
    n: int = Field(gt=0, description="Rows the reference was fitted on.")

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalReference:
        _check_shares(list(self.frequencies.values()), len(self.frequencies))
        return self


FeatureReference = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


class DriftReference(BaseModel):
    """Per-feature reference distributions, fitted on training data and stored as JSON."""

    schema_version: Literal[1] = Field(default=1, description="Layout version of this model.")
    features: dict[str, FeatureReference] = Field(description="Feature name → reference.")
    n_rows: int = Field(gt=0, description="Rows of the training frame.")
    ignored: list[str] = Field(
        default_factory=list, description="Columns skipped by fit: unsupported dtypes."
    )
    fitted_at: datetime = Field(default_factory=lambda: datetime.now(UTC), description="When fit ran (UTC).")

    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        features: list[str] | None = None,
        *,
        bins: int = 10,
        max_categories: int = 50,
    ) -> DriftReference:
        """Fit quantile bins (numeric) and category shares (categorical) on ``df``.

        ``features=None`` takes every numeric, boolean, string, object and category column and
        lists the others (datetimes…) in ``ignored``. Categories beyond the ``max_categories``
        most frequent are pooled under ``'<other>'``.

        Refuses with ``InvalidInput``: a non-DataFrame or empty frame; an unknown or unsupported
        named feature; a feature with no non-missing value; ``bins < 2``.
        """
        if not isinstance(df, pd.DataFrame) or len(df) == 0:
            raise InvalidInput("reference data must be a non-empty DataFrame", field="df")
        if bins < 2 or max_categories < 1:
            raise InvalidInput("bins must be ≥ 2 and max_categories ≥ 1", field="bins")
        if features is None:
            names = [str(c) for c in df.columns]
            chosen = [c for c in names if feature_kind(df[c]) is not None]
            ignored = [c for c in names if feature_kind(df[c]) is None]
        else:
            unknown = [c for c in features if c not in df.columns]
            if unknown:
                raise InvalidInput(f"unknown features: {unknown}", field="features")
            bad = [c for c in features if feature_kind(df[c]) is None]
            if bad:
                raise InvalidInput(f"unsupported dtype for features: {bad}", field="features")
            chosen, ignored = list(features), []
        refs: dict[str, NumericReference | CategoricalReference] = {}
        for c in chosen:
            col = df[c]
            if col.isna().all():
                raise InvalidInput(f"feature {c!r} has no non-missing values", field="features")
            if feature_kind(col) == "numeric":
                refs[c] = _fit_numeric(floats(col), bins)
            else:
                refs[c] = _fit_categorical(col, max_categories)
        return cls(features=refs, n_rows=len(df), ignored=ignored)


def feature_kind(col: pd.Series) -> Literal["numeric", "categorical"] | None:
    """How a column is compared: numeric (PSI), categorical (JS; booleans too), or not at all."""
    dt = col.dtype
    if pd.api.types.is_bool_dtype(dt):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_complex_dtype(dt):
        return "numeric"
    if (
        isinstance(dt, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(dt)
        or pd.api.types.is_object_dtype(dt)
    ):
        return "categorical"
    return None


def floats(col: pd.Series) -> np.ndarray:
    """A numeric column as float64 with NaN for missing; no copy when it is float64 already."""
    # Nullable Int64/Float64 carry pd.NA; map it to NaN so one code path handles both.
    if col.dtype == np.float64:
        return col.to_numpy()
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


PERCENTILE_SAMPLE = 100_000


def _fit_numeric(x: np.ndarray, bins: int) -> NumericReference:
    finite_mask = np.isfinite(x)
    finite = x if finite_mask.all() else x[finite_mask]
    if finite.size == 0:
        raise InvalidInput("a numeric feature has no finite values", field="features")
    # Bin edges are exact quantiles: they define PSI. The 101 percentiles only shape the optional
    # small-sample KS, so above PERCENTILE_SAMPLE values they come from an even stride (with the
    # exact min and max), which halves the fit time on large data.
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))  # ties merge bins
    step = max(1, finite.size // PERCENTILE_SAMPLE)
    pct = np.quantile(finite[::step], np.linspace(0, 1, 101))
    pct[0], pct[-1] = finite.min(), finite.max()
    counts, n_present = bin_counts(x, edges)
    return NumericReference(
        edges=edges.tolist(),
        frequencies=(counts / n_present).tolist(),
        nan_rate=float(1 - n_present / x.size),
        n=int(x.size),
        percentiles=pct.tolist(),
    )


def _fit_categorical(col: pd.Series, max_categories: int) -> CategoricalReference:
    counts = category_counts(col)
    present = int(counts.sum())
    top = counts.iloc[:max_categories]
    freqs = {str(k): float(v / present) for k, v in top.items()}
    rest = present - int(top.sum())
    if rest:
        freqs[OTHER] = rest / present
    return CategoricalReference(frequencies=freqs, nan_rate=float(1 - present / len(col)), n=len(col))


def bin_counts(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, int]:
    """Counts of non-missing ``x`` per bin ``(-inf, e0], (e0, e1], …, (e_last, inf)``.

    Few edges: one vectorized comparison per edge (``count_nonzero(x > e)``) and differences,
    which avoids materialising a bin index; many edges: ``searchsorted`` + ``bincount``.
    Returns the counts and the number of non-missing values.
    """
    n_present = int(x.size - np.count_nonzero(np.isnan(x)))
    if edges.size <= 32:
        above = np.array([np.count_nonzero(x > e) for e in edges], dtype=np.int64)
        counts = -np.diff(np.concatenate([[n_present], above, [0]]))
    else:
        idx = np.searchsorted(edges, x, side="left")  # NaN sorts last: lands in the top bin
        counts = np.bincount(idx, minlength=edges.size + 1)
        counts[-1] -= x.size - n_present
    return counts, n_present


def category_counts(col: pd.Series) -> pd.Series:
    """Non-missing counts per category, keyed by the category's string form, largest first."""
    counts = col.value_counts(dropna=True)
    counts = counts[counts > 0]  # unused categories of a Categorical are not observations
    # 1 and 1.0 are one category: ints become floats when a column gains a NaN.
    keys = [
        str(int(k)) if isinstance(k, float | np.floating) and float(k).is_integer() else str(k)
        for k in counts.index
    ]
    merged = pd.Series(counts.to_numpy(), index=keys).groupby(level=0, sort=False).sum()
    return merged.sort_values(ascending=False, kind="stable")


def _check_shares(shares: list[float], expected_len: int) -> None:
    s = np.asarray(shares, dtype=float)
    if s.size != expected_len or s.size == 0:
        raise ValueError(f"expected {expected_len} shares, got {s.size}")
    if not np.isfinite(s).all() or (s < 0).any() or abs(s.sum() - 1) > 1e-6:
        raise ValueError("shares must be non-negative and sum to 1")
