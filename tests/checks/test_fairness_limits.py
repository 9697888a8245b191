"""Fairness gate limits at their edges: which limit binds, exact-limit values, messages, details."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from checks.fairness import fairness_gate
from registry.errors import InvalidInput


def _two_groups(rate_a: float, rate_b: float, n: int = 200) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Groups a and b of n rows; half positives each; predicted-positive rates as given,
    spread evenly over positives and negatives so TPR = FPR = the selection rate."""
    y_true, y_pred, group = [], [], []
    for g, rate in (("a", rate_a), ("b", rate_b)):
        half = n // 2
        k = round(rate * half)
        for label in (1, 0):
            y_true += [label] * half
            y_pred += [1] * k + [0] * (half - k)
            group += [g] * half
    return np.array(y_true), np.array(y_pred), pd.Series(group, name="group")


def test_a_value_exactly_at_its_limit_passes() -> None:
    y, p, g = _two_groups(0.25, 0.5)  # dp diff 0.25, eo diff 0.25, dp ratio 0.5: exact in floats
    at = fairness_gate(y, p, g, max_dp_diff=0.25, max_eo_diff=0.25, min_dp_ratio=0.5)
    assert at.passed, at.message
    over = fairness_gate(y, p, g, max_dp_diff=0.2499, max_eo_diff=None)
    assert not over.passed
    assert over.message == "demographic_parity_difference on group = 0.25 (> 0.2499)"
    under = fairness_gate(y, p, g, max_dp_diff=None, max_eo_diff=None, min_dp_ratio=0.5001)
    assert not under.passed
    assert under.message == "demographic_parity_ratio on group = 0.5 (< 0.5001)"


def test_the_binding_limit_is_the_one_closest_to_breaking() -> None:
    y, p, g = _two_groups(0.25, 0.5)
    r = fairness_gate(y, p, g, max_dp_diff=1.0, max_eo_diff=0.3, min_dp_ratio=0.1)
    # use: dp 0.25/1.0, eo 0.25/0.3, ratio 0.1/0.5 -> eo binds
    assert (r.metric, r.value, r.threshold) == ("equalized_odds_difference", 0.25, 0.3)
    assert r.message == "all limits met; closest: equalized_odds_difference on group = 0.25 (limit 0.3)"
    r = fairness_gate(y, p, g, max_dp_diff=1.0, max_eo_diff=None, min_dp_ratio=0.45)
    assert (r.metric, r.threshold) == ("demographic_parity_ratio", 0.45)  # 0.45/0.5 beats 0.25/1
    r = fairness_gate(y, p, g, max_dp_diff=0.0, max_eo_diff=0.3)
    assert not r.passed and r.metric == "demographic_parity_difference"  # a zero limit binds
    assert r.message == "demographic_parity_difference on group = 0.25 (> 0)"


def test_every_failing_limit_is_in_the_message() -> None:
    y, p, g = _two_groups(0.25, 0.5)
    r = fairness_gate(y, p, g, max_dp_diff=0.1, max_eo_diff=0.3, max_eopp_diff=0.2, min_dp_ratio=0.9)
    assert r.message == (
        "demographic_parity_difference on group = 0.25 (> 0.1); "
        "equal_opportunity_difference on group = 0.25 (> 0.2); "
        "demographic_parity_ratio on group = 0.5 (< 0.9)"
    )
    assert [c["measure"] for c in r.details["checks"] if not c["passed"]] == [
        "demographic_parity_difference",
        "equal_opportunity_difference",
        "demographic_parity_ratio",
    ]


def test_a_zero_over_zero_ratio_is_parity() -> None:
    y, p, g = _two_groups(0.0, 0.0)
    r = fairness_gate(y, p, g, max_dp_diff=None, max_eo_diff=None, min_dp_ratio=0.8)
    assert r.passed and r.value is None
    assert r.message == "all limits met; closest: demographic_parity_ratio on group = 0 (limit 0.8)"
    r = fairness_gate(y, p, g, max_dp_diff=0.0, max_eo_diff=None, min_dp_ratio=0.8)
    assert r.passed and r.metric == "demographic_parity_difference"  # 0 at a zero limit uses nothing


def test_only_the_limits_that_are_set_are_checked() -> None:
    y, p, g = _two_groups(0.25, 0.5)
    r = fairness_gate(y, p, g, max_dp_diff=None, max_eo_diff=None, max_eopp_diff=0.3)
    assert [c["measure"] for c in r.details["checks"]] == ["equal_opportunity_difference"]
    assert r.metric == "equal_opportunity_difference"


def test_defaults_and_details_shape() -> None:
    rng = np.random.default_rng(3)
    n = 400
    g = pd.Series(rng.choice(["a", "b", "c"], n), name="group")
    y = rng.integers(0, 2, n)
    y[g.to_numpy() == "c"] = 1  # c has no negatives: its FPR is undefined
    p = rng.integers(0, 2, n)
    r = fairness_gate(y, p, g)
    assert r.name == "fairness" and 0 < r.duration < 60
    d = r.details
    assert d["limits"] == {
        "demographic_parity_difference": 0.1,
        "equalized_odds_difference": 0.1,
        "equal_opportunity_difference": None,
        "demographic_parity_ratio": None,
    }
    assert d["min_group_size"] == 30 and d["problems"] == []
    assert all(set(c) == {"feature_set", "measure", "value", "limit", "passed"} for c in d["checks"])
    fs = d["feature_sets"]["group"]
    assert set(fs) == {
        "features", "demographic_parity_difference", "demographic_parity_ratio",
        "equalized_odds_difference", "equal_opportunity_difference",
        "false_positive_rate_difference", "groups", "excluded_groups", "tpr_undefined", "fpr_undefined",
    }  # fmt: skip
    assert fs["features"] == ["group"]
    assert fs["tpr_undefined"] == [] and fs["fpr_undefined"] == [{"group": "c"}]
    small = fairness_gate(y, p, g, min_group_size=31)
    assert small.details["min_group_size"] == 31


def test_group_with_no_positives_has_undefined_tpr() -> None:
    y, p, g = _two_groups(0.25, 0.5)
    y = y.copy()
    y[g.to_numpy() == "b"] = 0
    fs = fairness_gate(y, p, g).details["feature_sets"]["group"]
    assert fs["tpr_undefined"] == [{"group": "b"}] and fs["fpr_undefined"] == []


def test_pos_label_and_method_reach_the_metrics() -> None:
    y, p, g = _two_groups(0.25, 0.5)
    labels = np.where(y == 1, "yes", "no")
    preds = np.where(p == 1, "yes", "no")
    for method in ("fast", "fairlearn"):
        r = fairness_gate(labels, preds, g, pos_label="yes", method=method, max_eo_diff=None)
        assert r.details["method"] == method
        assert r.value == 0.25


def test_no_assessable_set_reports_the_gate_itself() -> None:
    y, p, g = _two_groups(0.25, 0.5, n=20)
    r = fairness_gate(y, p, g)  # both groups below 30 rows
    assert not r.passed and (r.metric, r.value, r.threshold) == ("fairness", None, None)
    assert r.message == "group: 0 group(s) with ≥ 30 rows; cannot assess (2 excluded)"


@pytest.mark.parametrize("limit", ["max_dp_diff", "max_eo_diff", "max_eopp_diff", "min_dp_ratio"])
def test_each_limit_is_validated_under_its_own_name(limit: str) -> None:
    y, p, g = _two_groups(0.25, 0.5)
    with pytest.raises(InvalidInput) as err:
        fairness_gate(y, p, g, **{limit: math.nan})
    assert err.value.field == limit


def test_no_limit_at_all_is_refused() -> None:
    y, p, g = _two_groups(0.25, 0.5)
    with pytest.raises(InvalidInput, match="^a fairness gate needs at least one limit$") as err:
        fairness_gate(y, p, g, max_dp_diff=None, max_eo_diff=None)
    assert err.value.field == "max_dp_diff"
