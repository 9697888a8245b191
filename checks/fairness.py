"""Fairness gate: limits on group disparities of a binary classifier.

The numbers are fairlearn's (see ``checks.group_metrics``); this module only judges them.
Bad input policy: labels, predictions and sensitive features are refused with ``InvalidInput``
when malformed; a feature set too small to assess is a failed gate, not an exception.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from checks._inputs import finite_or_none
from checks.group_metrics import (
    FeatureSetFairness,
    GroupRates,
    Method,
    fairness_metrics,
    resolve_method,
)
from checks.result import GateResult
from registry.errors import InvalidInput

__all__ = ["FeatureSetFairness", "GroupRates", "fairness_gate", "fairness_metrics"]


def fairness_gate(
    y_true: Any,
    y_pred: Any,
    sensitive: Any,
    *,
    max_dp_diff: float | None = 0.1,
    max_eo_diff: float | None = 0.1,
    max_eopp_diff: float | None = None,
    min_dp_ratio: float | None = None,
    min_group_size: int = 30,
    intersectional: bool = True,
    data: pd.DataFrame | None = None,
    pos_label: Any = 1,
    method: Method = "auto",
    name: str = "fairness",
) -> GateResult:
    """Pass when every sensitive feature, and their intersection, is within every limit.

    ``sensitive`` is a Series, a DataFrame of several columns, a 1-D/2-D array, or (with
    ``data``) a column name or list of names in ``data``. Each column is assessed alone and,
    with ``intersectional`` and more than one column, all columns together. Groups smaller than
    ``min_group_size`` are excluded from the disparities and listed in the details; a feature
    set left with fewer than two groups fails the gate, since fairness cannot be shown on it.

    Refuses with ``InvalidInput``: no limit set; empty or mismatched inputs; missing values in
    labels or sensitive features; labels that are not binary; a single-class ``y_true``
    (TPR/FPR undefined); unknown sensitive column names; ``min_group_size < 1``.
    """
    start = time.perf_counter()
    limits = {
        "demographic_parity_difference": finite_or_none(max_dp_diff, "max_dp_diff"),
        "equalized_odds_difference": finite_or_none(max_eo_diff, "max_eo_diff"),
        "equal_opportunity_difference": finite_or_none(max_eopp_diff, "max_eopp_diff"),
        "demographic_parity_ratio": finite_or_none(min_dp_ratio, "min_dp_ratio"),
    }
    if all(v is None for v in limits.values()):
        raise InvalidInput("a fairness gate needs at least one limit", field="max_dp_diff")
    sets = fairness_metrics(
        y_true,
        y_pred,
        sensitive,
        min_group_size=min_group_size,
        intersectional=intersectional,
        data=data,
        pos_label=pos_label,
        method=method,
    )

    checks: list[dict[str, Any]] = []
    problems: list[str] = []
    for fs in sets:
        if len(fs.groups) < 2:
            problems.append(
                f"{fs.key}: {len(fs.groups)} group(s) with ≥ {min_group_size} rows; "
                f"cannot assess ({len(fs.excluded)} excluded)"
            )
            continue
        observed = {
            "demographic_parity_difference": fs.dp_diff,
            "equalized_odds_difference": fs.eo_diff,
            "equal_opportunity_difference": fs.tpr_diff,
            "demographic_parity_ratio": fs.dp_ratio,
        }
        for measure, limit in limits.items():
            if limit is None:
                continue
            value = observed[measure]
            is_ratio = measure.endswith("ratio")
            # A 0/0 ratio means every group has selection rate 0: parity holds.
            ok = value is None or (value >= limit if is_ratio else value <= limit)
            checks.append(
                {
                    "feature_set": fs.key,
                    "measure": measure,
                    "value": value,
                    "limit": limit,
                    "passed": ok,
                    "use": _utilisation(value, limit, is_ratio),
                }
            )

    passed = not problems and all(c["passed"] for c in checks)
    binding = max(checks, key=lambda c: c["use"]) if checks else None
    failing = [c for c in checks if not c["passed"]]
    if problems:
        message = "; ".join(problems)
    elif failing:
        message = "; ".join(
            f"{c['measure']} on {c['feature_set']} = {c['value']:.4g} "
            f"({'<' if c['measure'].endswith('ratio') else '>'} {c['limit']:g})"
            for c in failing
        )
    else:
        assert binding is not None
        message = (
            f"all limits met; closest: {binding['measure']} on {binding['feature_set']} = "
            f"{(binding['value'] or 0):.4g} (limit {binding['limit']:g})"
        )
    n_rows = sum(g.n for g in sets[0].groups + sets[0].excluded)  # every set covers all rows
    return GateResult(
        name=name,
        passed=passed,
        metric=binding["measure"] if binding else "fairness",
        value=binding["value"] if binding else None,
        threshold=binding["limit"] if binding else None,
        details={
            "limits": limits,
            "min_group_size": min_group_size,
            "method": resolve_method(method, n_rows),
            "checks": [{k: v for k, v in c.items() if k != "use"} for c in checks],
            "problems": problems,
            "feature_sets": {fs.key: _feature_set_details(fs) for fs in sets},
        },
        duration=time.perf_counter() - start,
        message=message,
    )


def _utilisation(value: float | None, limit: float, is_ratio: bool) -> float:
    """How much of the allowance is used; > 1 means the limit is broken."""
    if value is None:
        return 0.0
    if is_ratio:
        return float("inf") if value == 0 else limit / value
    if limit == 0:
        return float("inf") if value > 0 else 0.0
    return value / limit


def _feature_set_details(fs: FeatureSetFairness) -> dict[str, Any]:
    groups = [g.model_dump() for g in fs.groups]
    return {
        "features": fs.features,
        "demographic_parity_difference": fs.dp_diff,
        "demographic_parity_ratio": fs.dp_ratio,
        "equalized_odds_difference": fs.eo_diff,
        "equal_opportunity_difference": fs.tpr_diff,
        "false_positive_rate_difference": fs.fpr_diff,
        "groups": groups,
        "excluded_groups": [{"group": g.group, "n": g.n} for g in fs.excluded],
        "tpr_undefined": [g.group for g in fs.groups if g.positives == 0],
        "fpr_undefined": [g.group for g in fs.groups if g.positives == g.n],
    }
