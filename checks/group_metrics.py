"""Per-group rates and disparities of a binary classifier, as fairlearn defines them.

fairlearn is the definition. Up to ``FAIRLEARN_MAX_ROWS`` rows the numbers come from
``fairlearn.metrics.MetricFrame`` itself. Above that a vectorized path counts
(group, y_true, y_pred) cells with one ``np.bincount`` and derives the same rates with the same
floating-point divisions, so both paths agree to 1e-12 (tests compare them on random data).

Definitions (fairlearn 0.15, ``method="between_groups"``), over the groups kept by the size rule:
- demographic parity difference / ratio: max − min / min ÷ max of group selection rates;
- equal opportunity difference: max − min of group true positive rates;
- equalized odds difference: the larger of the TPR and FPR differences.
A group without positives (negatives) has TPR (FPR) 0, as fairlearn has it; such groups are
listed under ``tpr_undefined`` / ``fpr_undefined`` so the reader is not misled.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from checks._inputs import as_1d, no_missing, same_length
from registry.errors import InvalidInput

FAIRLEARN_MAX_ROWS = 100_000
Method = Literal["auto", "fairlearn", "fast"]


class GroupRates(BaseModel):
    """Rates of one (possibly intersectional) group."""

    group: dict[str, Any] = Field(description="Sensitive column → value identifying the group.")
    n: int = Field(description="Rows in the group.")
    positives: int | None = Field(default=None, description="Rows with y_true positive.")
    selection_rate: float | None = Field(default=None, description="P(y_pred=1 | group).")
    tpr: float | None = Field(default=None, description="True positive rate in the group.")
    fpr: float | None = Field(default=None, description="False positive rate in the group.")


class FeatureSetFairness(BaseModel):
    """Disparities across the groups of one sensitive column, or of several intersected."""

    features: list[str] = Field(description="Sensitive columns defining the groups.")
    groups: list[GroupRates] = Field(description="Groups kept (size ≥ min_group_size).")
    excluded: list[GroupRates] = Field(description="Groups below min_group_size, left out.")
    dp_diff: float | None = Field(description="Demographic parity difference.")
    dp_ratio: float | None = Field(description="Demographic parity ratio (None if 0/0).")
    tpr_diff: float | None = Field(description="Max − min TPR (equal opportunity difference).")
    fpr_diff: float | None = Field(description="Max − min FPR.")
    eo_diff: float | None = Field(description="Equalized odds difference (worst case).")

    @property
    def key(self) -> str:
        """Name of the feature set, e.g. 'sex' or 'sex&race'."""
        return "&".join(self.features)


def fairness_metrics(
    y_true: Any,
    y_pred: Any,
    sensitive: Any,
    *,
    min_group_size: int = 30,
    intersectional: bool = True,
    data: pd.DataFrame | None = None,
    pos_label: Any = 1,
    method: Method = "auto",
) -> list[FeatureSetFairness]:
    """Per-group rates and disparities for each sensitive feature set, without a verdict.

    ``method="fairlearn"`` uses MetricFrame, ``"fast"`` the vectorized counts, ``"auto"``
    fairlearn up to ``FAIRLEARN_MAX_ROWS`` rows. Refuses what ``fairness_gate`` refuses.
    """
    if min_group_size < 1:
        raise InvalidInput("min_group_size must be at least 1", field="min_group_size")
    if method not in ("auto", "fairlearn", "fast"):
        raise InvalidInput(f"unknown method {method!r}", field="method")
    yt, yp = _binary_labels(y_true, y_pred, pos_label)
    frame = _sensitive_frame(sensitive, data)
    same_length(y_true=yt, y_pred=yp, sensitive=frame)
    cols = list(frame.columns)
    feature_sets = [[c] for c in cols]
    if intersectional and len(cols) > 1:
        feature_sets.append(cols)
    compute = _fairlearn if resolve_method(method, yt.size) == "fairlearn" else _fast
    return [compute(yt, yp, frame, fs, min_group_size) for fs in feature_sets]


# --- the two computations -----------------------------------------------------------------


def _fairlearn(
    yt: np.ndarray, yp: np.ndarray, frame: pd.DataFrame, cols: list[str], min_size: int
) -> FeatureSetFairness:
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    sizes = {_key(k): int(v) for k, v in frame[cols].value_counts(sort=False).sort_index().items()}
    excluded = [GroupRates(group=_group(cols, k), n=v) for k, v in sizes.items() if v < min_size]
    kept_keys = [k for k, v in sizes.items() if v >= min_size]
    if len(kept_keys) < 2:
        kept = [GroupRates(group=_group(cols, k), n=sizes[k]) for k in kept_keys]
        return _undefined(cols, kept, excluded)
    # Filtering rows rather than groups keeps fairlearn's own difference()/ratio() usable.
    mask = np.asarray(pd.MultiIndex.from_frame(frame[cols]).isin(kept_keys))
    sf = frame.loc[mask, cols].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's zero-division warnings for one-class groups
        mf = MetricFrame(
            metrics={
                "selection_rate": selection_rate,
                "tpr": true_positive_rate,
                "fpr": false_positive_rate,
            },
            y_true=yt[mask].astype(np.int8),
            y_pred=yp[mask].astype(np.int8),
            sensitive_features=sf if len(cols) > 1 else sf[cols[0]],
        )
        # Unobserved intersections appear as all-NaN rows; they are not groups.
        by = mf.by_group.dropna(how="all")
        diff, ratio = mf.difference(), mf.ratio()
    pos = {_key(k): int(v) for k, v in pd.Series(yt[mask]).groupby([sf[c] for c in cols]).sum().items()}
    groups = [
        GroupRates(
            group=_group(cols, _key(k)),
            n=sizes[_key(k)],
            positives=pos[_key(k)],
            selection_rate=float(row["selection_rate"]),
            tpr=float(row["tpr"]),
            fpr=float(row["fpr"]),
        )
        for k, row in by.iterrows()
    ]
    return FeatureSetFairness(
        features=cols,
        groups=groups,
        excluded=excluded,
        dp_diff=_f(diff["selection_rate"]),
        dp_ratio=_f(ratio["selection_rate"]),
        tpr_diff=_f(diff["tpr"]),
        fpr_diff=_f(diff["fpr"]),
        eo_diff=_f(max(diff["tpr"], diff["fpr"])),
    )


def _fast(
    yt: np.ndarray, yp: np.ndarray, frame: pd.DataFrame, cols: list[str], min_size: int
) -> FeatureSetFairness:
    codes, uniques = _group_codes(frame, cols)
    n_groups = len(uniques)
    # Cell index: group * 4 + 2 * y_true + y_pred -> counts of TN, FP, FN, TP per group.
    cell = codes * 4 + (yt.astype(np.int64) << 1) + yp.astype(np.int64)
    counts = np.bincount(cell, minlength=4 * n_groups).reshape(n_groups, 4)
    tn, fp, fn, tp = counts.T
    n = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Same divisions as fairlearn/sklearn; 0/0 becomes 0 as sklearn's nan_to_num does.
        sel = (fp + tp) / n
        tpr = np.nan_to_num(tp / (tp + fn))
        fpr = np.nan_to_num(fp / (fp + tn))
    keep = n >= min_size
    excluded = [GroupRates(group=_group(cols, uniques[i]), n=int(n[i])) for i in np.flatnonzero(~keep)]
    groups = [
        GroupRates(
            group=_group(cols, uniques[i]),
            n=int(n[i]),
            positives=int(tp[i] + fn[i]),
            selection_rate=float(sel[i]),
            tpr=float(tpr[i]),
            fpr=float(fpr[i]),
        )
        for i in np.flatnonzero(keep)
    ]
    if keep.sum() < 2:
        # Same shape as the fairlearn path, which computes no rates when it cannot compare.
        kept = [GroupRates(group=g.group, n=g.n) for g in groups]
        return _undefined(cols, kept, excluded)
    s, t, f = sel[keep], tpr[keep], fpr[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = s.min() / s.max()
    tpr_diff, fpr_diff = t.max() - t.min(), f.max() - f.min()
    return FeatureSetFairness(
        features=cols,
        groups=groups,
        excluded=excluded,
        dp_diff=_f(s.max() - s.min()),
        dp_ratio=_f(ratio),
        tpr_diff=_f(tpr_diff),
        fpr_diff=_f(fpr_diff),
        eo_diff=_f(max(tpr_diff, fpr_diff)),
    )


def _group_codes(frame: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, list[tuple]]:
    """Dense group codes in sorted (lexicographic) order and the value tuple of each code."""
    codes = np.zeros(len(frame), dtype=np.int64)
    levels: list[np.ndarray] = []
    for c in cols:
        col_codes, col_uniques = pd.factorize(frame[c], sort=True)
        levels.append(np.asarray(col_uniques, dtype=object))
        codes = codes * len(col_uniques) + col_codes
    # Compress to observed combinations; np.unique keeps lexicographic order of the codes.
    observed, codes = np.unique(codes, return_inverse=True)
    uniques: list[tuple] = []
    for code in observed.tolist():
        parts = []
        for lv in reversed(levels):
            code, r = divmod(code, len(lv))
            parts.append(lv[r])
        uniques.append(tuple(reversed(parts)))
    return codes.reshape(-1), uniques


# --- input handling -----------------------------------------------------------------------


def _binary_labels(y_true: Any, y_pred: Any, pos_label: Any) -> tuple[np.ndarray, np.ndarray]:
    yt = no_missing(as_1d(y_true, "y_true"), "y_true")
    yp = no_missing(as_1d(y_pred, "y_pred"), "y_pred")
    same_length(y_true=yt, y_pred=yp)
    for field, arr in (("y_true", yt), ("y_pred", yp)):
        values = pd.unique(arr)
        if len(values) > 2 or (len(values) == 2 and pos_label not in set(values.tolist())):
            raise InvalidInput(
                f"{field} must be binary labels containing pos_label={pos_label!r}; "
                f"got values {sorted(map(str, values))[:5]}",
                field=field,
            )
    t, p = yt == pos_label, yp == pos_label
    if t.all() or not t.any():
        raise InvalidInput("y_true has a single class; TPR/FPR are undefined", field="y_true")
    return np.asarray(t, dtype=bool), np.asarray(p, dtype=bool)


def _sensitive_frame(sensitive: Any, data: pd.DataFrame | None) -> pd.DataFrame:
    if data is not None and (isinstance(sensitive, str) or _is_name_list(sensitive)):
        names = [sensitive] if isinstance(sensitive, str) else list(sensitive)
        unknown = [c for c in names if c not in data.columns]
        if unknown:
            raise InvalidInput(f"unknown sensitive columns: {unknown}", field="sensitive")
        frame = data[names]
    elif isinstance(sensitive, str):
        raise InvalidInput(f"sensitive column {sensitive!r} given without data=", field="sensitive")
    elif isinstance(sensitive, pd.DataFrame):
        frame = sensitive
    elif isinstance(sensitive, pd.Series):
        frame = sensitive.to_frame(name=sensitive.name if sensitive.name is not None else "sensitive")
    else:
        arr = np.asarray(sensitive, dtype=object)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise InvalidInput(f"sensitive must be 1-D or 2-D, got {arr.shape}", field="sensitive")
        names = ["sensitive"] if arr.shape[1] == 1 else [f"sensitive_{i}" for i in range(arr.shape[1])]
        frame = pd.DataFrame(arr, columns=names)
    if frame.shape[1] == 0 or len(frame) == 0:
        raise InvalidInput("sensitive has no columns or no rows", field="sensitive")
    frame = frame.reset_index(drop=True)  # positional, like y_true and y_pred
    frame.columns = [str(c) for c in frame.columns]
    for c in frame.columns:
        if frame[c].isna().any():
            raise InvalidInput(f"sensitive column {c!r} has missing values", field="sensitive")
    return frame


def _is_name_list(x: Any) -> bool:
    return isinstance(x, list | tuple) and len(x) > 0 and all(isinstance(v, str) for v in x)


# --- helpers ------------------------------------------------------------------------------


def resolve_method(method: Method, n: int) -> str:
    """The path ``method`` selects for ``n`` rows: "fairlearn" or "fast"."""
    if method == "auto":
        return "fairlearn" if n <= FAIRLEARN_MAX_ROWS else "fast"
    return method


def _key(k: Any) -> tuple:
    return k if isinstance(k, tuple) else (k,)


def _group(cols: list[str], key: tuple) -> dict[str, Any]:
    return {c: v.item() if isinstance(v, np.generic) else v for c, v in zip(cols, key, strict=True)}


def _undefined(cols: list[str], kept: list[GroupRates], excluded: list[GroupRates]) -> FeatureSetFairness:
    return FeatureSetFairness(
        features=cols,
        groups=kept,
        excluded=excluded,
        dp_diff=None,
        dp_ratio=None,
        tpr_diff=None,
        fpr_diff=None,
        eo_diff=None,
    )


def _f(x: Any) -> float | None:
    v = float(x)
    return v if np.isfinite(v) else None
