"""Drift gate: compare new data with the reference stored beside the model version.

- Numeric features: PSI on the reference's decile bins. PSI depends on the bins, so the bin edges
  are fitted once on the training data and stored with the version (``DriftReference``).
- Categorical features: Jensen–Shannon distance (natural log, as scipy and Evidently) over the
  reference categories plus one bucket for categories the reference never saw.
- Every feature: the change in missing-value rate.
- KS is a secondary signal only, for small current samples: at 1M rows it flags a 0.05σ shift
  at p≈1e-188, so above ``ks_max_n`` it is not even computed. It can raise a feature to ``warn``,
  never to ``act``. It is one-sample, against the CDF interpolated from the stored percentiles.

Bad input policy: the reference and thresholds are refused with ``InvalidInput`` when malformed;
the current data is what is judged, so an empty frame, a missing feature or a changed type is a
feature in status ``act`` and a failed gate, never an exception.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ValidationError

from checks.drift_reference import (
    OTHER,
    CategoricalReference,
    DriftReference,
    NumericReference,
    bin_counts,
    category_counts,
    feature_kind,
    floats,
)
from checks.result import GateResult
from registry.errors import InvalidInput

__all__ = ["DriftReference", "drift_gate", "js_distance", "psi"]

Status = Literal["ok", "warn", "act"]
_RANK = {"ok": 0, "warn": 1, "act": 2}
PSI_FLOOR = 1e-4  # share floor inside PSI, so an empty bin costs a bounded amount, not inf
# A score equal to a threshold up to float error reaches it: 10 more points of missing values
# out of 100 rows is a change of 0.09999999999999998, and that is the 0.10 it means.
TOLERANCE = 1e-9


def drift_gate(
    reference: DriftReference | dict[str, Any],
    current_df: pd.DataFrame,
    warn: float = 0.1,
    act: float = 0.25,
    drift_share: float = 0.5,
    *,
    js_warn: float | None = None,
    js_act: float | None = None,
    nan_warn: float = 0.05,
    nan_act: float = 0.10,
    ks_alpha: float | None = None,
    ks_max_n: int = 1000,
    required: Iterable[str] = (),
    name: str = "drift",
) -> GateResult:
    """Score each reference feature on ``current_df`` and give the dataset verdict.

    A feature's status is the worst of: PSI vs ``warn``/``act`` (numeric); JS distance vs
    ``js_warn``/``js_act`` (categorical; by default ``sqrt(warn/8)`` and ``sqrt(act/8)``, the JS
    distance matching that PSI for small shifts); missing-rate change vs ``nan_warn``/``nan_act``;
    and, when ``ks_alpha`` is set and at most ``ks_max_n`` values are present, KS p < alpha
    (warn only). The verdict is ``act`` when the share of ``act`` features reaches
    ``drift_share``, ``warn`` when any feature is warn or act, else ``ok``. The gate passes
    unless the verdict is ``act``. A column of ``required`` (the model's inputs) missing from
    ``current_df`` makes the verdict ``act`` whatever the share: the model cannot score that
    data. A score within ``TOLERANCE`` (1e-9) below a threshold reaches
    it, so float error in a rate never turns an exact 0.10 change into 0.0999….

    Refuses with ``InvalidInput``: a reference that does not validate; a non-DataFrame
    ``current_df``; thresholds that are not ``0 < warn ≤ act``; ``drift_share`` outside (0, 1].
    """
    start = time.perf_counter()
    ref = _as_reference(reference)
    if not isinstance(current_df, pd.DataFrame):
        raise InvalidInput("current_df must be a DataFrame", field="current_df")
    jw = js_warn if js_warn is not None else math.sqrt(warn / 8) if warn > 0 else 0.0
    ja = js_act if js_act is not None else math.sqrt(act / 8) if act > 0 else 0.0
    for lo, hi, field in ((warn, act, "warn"), (jw, ja, "js_warn"), (nan_warn, nan_act, "nan_warn")):
        if not (0 < lo <= hi) or not math.isfinite(hi):
            raise InvalidInput(f"{field} thresholds must satisfy 0 < warn ≤ act", field=field)
    if not 0 < drift_share <= 1:
        raise InvalidInput("drift_share must be in (0, 1]", field="drift_share")

    per_feature: dict[str, dict[str, Any]] = {}
    for feat, fref in ref.features.items():
        if len(current_df) == 0:
            per_feature[feat] = _hard("empty", "current data has no rows")
        elif feat not in current_df.columns:
            per_feature[feat] = _hard("missing", "feature missing from current data")
        elif fref.kind == "numeric":
            per_feature[feat] = _score_numeric(fref, current_df[feat], warn, act, ks_alpha, ks_max_n)
        else:
            per_feature[feat] = _score_categorical(fref, current_df[feat], jw, ja)
        _add_nan_signal(per_feature[feat], fref.nan_rate, current_df, feat, nan_warn, nan_act)

    act_feats = [f for f, d in per_feature.items() if d["status"] == "act"]
    warn_feats = [f for f, d in per_feature.items() if d["status"] == "warn"]
    share = len(act_feats) / len(per_feature)
    missing_inputs = [str(c) for c in required if c not in current_df.columns]
    verdict: Status = (
        "act" if share >= drift_share or missing_inputs else "warn" if act_feats or warn_feats else "ok"
    )
    scored = {f: d for f, d in per_feature.items() if d["value"] is not None}
    psis = {f: d["value"] for f, d in scored.items() if d["method"] == "psi"}
    jss = {f: d["value"] for f, d in scored.items() if d["method"] == "jensenshannon"}
    max_psi_feat = max(psis, key=lambda f: psis[f]) if psis else None
    max_js_feat = max(jss, key=lambda f: jss[f]) if jss else None
    message = (
        f"verdict {verdict}: {len(act_feats)}/{len(per_feature)} features drifted "
        f"(share {share:.2f}, act at {drift_share:g}), {len(warn_feats)} warn"
        + (f"; max PSI {psis[max_psi_feat]:.3g} on {max_psi_feat}" if max_psi_feat else "")
        + (f"; model inputs missing: {', '.join(missing_inputs)}" if missing_inputs else "")
    )
    return GateResult(
        name=name,
        passed=verdict != "act",
        metric="drifted_feature_share",
        value=share,
        threshold=drift_share,
        details={
            "verdict": verdict,
            "drifted": act_feats,
            "missing_inputs": missing_inputs,
            "warned": warn_feats,
            "max_psi": psis[max_psi_feat] if max_psi_feat else None,
            "max_psi_feature": max_psi_feat,
            "max_js": jss[max_js_feat] if max_js_feat else None,
            "max_js_feature": max_js_feat,
            "n_rows": len(current_df),
            "thresholds": {
                "psi": [warn, act],
                "js": [jw, ja],
                "nan_change": [nan_warn, nan_act],
                "drift_share": drift_share,
                "ks_alpha": ks_alpha,
                "ks_max_n": ks_max_n,
            },
            "features": per_feature,
        },
        duration=time.perf_counter() - start,
        message=message,
    )


# --- scoring ------------------------------------------------------------------------------


def psi(ref_shares: np.ndarray, cur_shares: np.ndarray) -> float:
    """Population stability index, shares floored at ``PSI_FLOOR``."""
    r = np.maximum(ref_shares, PSI_FLOOR)
    c = np.maximum(cur_shares, PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance (natural log) between two share vectors."""
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(math.sqrt(max((kl_p + kl_q) / 2, 0.0)))


def _score_numeric(
    ref: NumericReference,
    col: pd.Series,
    warn: float,
    act: float,
    ks_alpha: float | None,
    ks_max_n: int,
) -> dict[str, Any]:
    if feature_kind(col) != "numeric":
        return _hard("dtype", f"expected a numeric column, got dtype {col.dtype}")
    x = floats(col)
    counts, n_present = bin_counts(x, np.asarray(ref.edges))
    out: dict[str, Any] = {"kind": "numeric", "n": n_present}
    if n_present == 0:
        return out | {
            "method": "psi",
            "value": None,
            "status": "ok",
            "note": "no non-missing values; judged on missing rate",
        }
    cur = counts / n_present
    value = psi(np.asarray(ref.frequencies), cur)
    out |= {
        "method": "psi",
        "value": value,
        "status": _status(value, warn, act),
        "reference_shares": ref.frequencies,
        "current_shares": cur.tolist(),
    }
    if ks_alpha is not None:
        out |= _ks(ref, x, n_present, ks_alpha, ks_max_n, out)
    return out


def _ks(
    ref: NumericReference,
    x: np.ndarray,
    n_present: int,
    alpha: float,
    max_n: int,
    out: dict[str, Any],
) -> dict[str, Any]:
    if n_present > max_n:
        return {"ks": f"skipped: {n_present} values > ks_max_n={max_n}"}
    from scipy.stats import kstest

    pct, keep = np.unique(np.asarray(ref.percentiles), return_index=True)
    probs = np.linspace(0, 1, 101)[keep]
    res = kstest(x[~np.isnan(x)], lambda v: np.interp(v, pct, probs))
    extra: dict[str, Any] = {"ks_statistic": float(res.statistic), "ks_pvalue": float(res.pvalue)}
    if res.pvalue < alpha and out["status"] == "ok":
        extra |= {"status": "warn", "status_reason": f"KS p < {alpha:g} on a small sample"}
    return extra


def _score_categorical(ref: CategoricalReference, col: pd.Series, warn: float, act: float) -> dict[str, Any]:
    counts = category_counts(col)
    n_present = int(counts.sum())
    out: dict[str, Any] = {"kind": "categorical", "method": "jensenshannon", "n": n_present}
    if n_present == 0:
        return out | {"value": None, "status": "ok", "note": "no non-missing values; judged on missing rate"}
    cats = [c for c in ref.frequencies if c != OTHER]
    known = counts.reindex(cats, fill_value=0).to_numpy(dtype=float)
    unseen = counts.drop(index=[c for c in cats if c in counts.index])
    # Categories outside the reference's list fall in its pooled tail when it has one.
    p = np.append(np.array([ref.frequencies[c] for c in cats]), ref.frequencies.get(OTHER, 0.0))
    q = np.append(known, float(unseen.sum())) / n_present
    value = js_distance(p, q)
    return out | {
        "value": value,
        "status": _status(value, warn, act),
        "unseen_share": float(unseen.sum() / n_present),
        "unseen_examples": unseen.index[:5].tolist(),
    }


def _add_nan_signal(
    d: dict[str, Any], ref_rate: float, df: pd.DataFrame, feat: str, warn: float, act: float
) -> None:
    if feat not in df.columns or len(df) == 0:
        return
    # Scorers already counted the non-missing values; reuse that instead of a second pass.
    present = d["n"] if "n" in d else int(df[feat].notna().sum())
    cur_rate = 1 - present / len(df)
    change = cur_rate - ref_rate
    d |= {"nan_rate_reference": ref_rate, "nan_rate_current": cur_rate, "nan_rate_change": change}
    nan_status = _status(abs(change), warn, act)
    if _RANK[nan_status] > _RANK[d["status"]]:
        d["status"] = nan_status
        d["status_reason"] = "missing-value rate changed"


def _status(value: float, warn: float, act: float) -> Status:
    return "act" if _reaches(value, act) else "warn" if _reaches(value, warn) else "ok"


def _reaches(value: float, threshold: float) -> bool:
    return value >= threshold - TOLERANCE


def _hard(method: str, note: str) -> dict[str, Any]:
    return {"method": method, "value": None, "status": "act", "note": note}


def _as_reference(reference: DriftReference | dict[str, Any]) -> DriftReference:
    if isinstance(reference, DriftReference):
        return reference
    try:
        return DriftReference.model_validate(reference)
    except ValidationError as exc:
        raise InvalidInput(f"invalid drift reference: {exc}", field="reference") from exc
