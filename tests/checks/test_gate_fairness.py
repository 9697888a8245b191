"""Fairness gate: fairlearn is the definition; the fast path must equal it to 1e-12."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
)

import checks.group_metrics as gm
from checks.fairness import fairness_gate
from checks.group_metrics import FeatureSetFairness, fairness_metrics
from registry.errors import InvalidInput


def _random_case(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    sens = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M", "X"], n, p=[0.49, 0.49, 0.02]),
            "band": rng.integers(0, 4, n),  # ints, so group keys are not only strings
            "region": rng.choice(["n", "s", "e", "w", "rare"], n, p=[0.3, 0.3, 0.2, 0.195, 0.005]),
        }
    )
    y_true = rng.integers(0, 2, n)
    # Selection depends on group, so the disparities are not all ~0.
    p = 0.25 + 0.1 * (sens["sex"] == "M") + 0.05 * sens["band"] + rng.normal(0, 0.05, n)
    y_pred = (rng.random(n) < p).astype(int)
    # One group in which every label is negative: fairlearn's TPR is 0 there, ours must be too.
    y_true[(sens["region"] == "rare").to_numpy()] = 0
    return y_true, y_pred, sens


def _flatten(fs: FeatureSetFairness) -> dict[tuple, float | int | None]:
    out: dict[tuple, float | int | None] = {
        ("agg", k): getattr(fs, k) for k in ("dp_diff", "dp_ratio", "tpr_diff", "fpr_diff", "eo_diff")
    }
    for g in fs.groups:
        key = tuple(g.group.items())
        for m in ("n", "positives", "selection_rate", "tpr", "fpr"):
            out[(key, m)] = getattr(g, m)
    for g in fs.excluded:
        out[(tuple(g.group.items()), "excluded_n")] = g.n
    return out


@pytest.mark.parametrize(("seed", "min_group_size"), [(0, 30), (1, 1), (2, 200)])
def test_fast_path_equals_fairlearn(seed: int, min_group_size: int) -> None:
    y_true, y_pred, sens = _random_case(seed, 6_000)
    kw = {"min_group_size": min_group_size, "intersectional": True}
    ref = fairness_metrics(y_true, y_pred, sens, method="fairlearn", **kw)
    fast = fairness_metrics(y_true, y_pred, sens, method="fast", **kw)
    assert [fs.key for fs in fast] == [fs.key for fs in ref] == [
        "sex", "band", "region", "sex&band&region"
    ]  # fmt: skip
    for a, b in zip(ref, fast, strict=True):
        fa, fb = _flatten(a), _flatten(b)
        assert fa.keys() == fb.keys(), a.key
        for k in fa:
            if fa[k] is None or fb[k] is None:
                assert fa[k] is fb[k], (a.key, k)
            else:
                assert abs(fa[k] - fb[k]) <= 1e-12, (a.key, k, fa[k], fb[k])
    # The comparison is not vacuous: there are real disparities and some excluded groups.
    assert ref[0].dp_diff > 0.05
    if min_group_size == 200:
        assert any(fs.excluded for fs in ref)


def test_values_match_fairlearn_public_functions() -> None:
    y_true, y_pred, sens = _random_case(5, 4_000)
    sex = sens["sex"]
    (fs,) = fairness_metrics(y_true, y_pred, sex, method="fast", min_group_size=1)
    kw = {"sensitive_features": sex}
    assert fs.dp_diff == pytest.approx(demographic_parity_difference(y_true, y_pred, **kw), abs=1e-12)
    assert fs.dp_ratio == pytest.approx(demographic_parity_ratio(y_true, y_pred, **kw), abs=1e-12)
    assert fs.eo_diff == pytest.approx(equalized_odds_difference(y_true, y_pred, **kw), abs=1e-12)
    assert fs.tpr_diff == pytest.approx(equal_opportunity_difference(y_true, y_pred, **kw), abs=1e-12)


def test_auto_uses_fairlearn_small_and_fast_large(monkeypatch: pytest.MonkeyPatch) -> None:
    y_true, y_pred, sens = _random_case(3, 3_000)
    small = fairness_gate(y_true, y_pred, sens["sex"], max_dp_diff=1.0)
    assert small.details["method"] == "fairlearn"
    monkeypatch.setattr(gm, "FAIRLEARN_MAX_ROWS", 1_000)
    large = fairness_gate(y_true, y_pred, sens["sex"], max_dp_diff=1.0)
    assert large.details["method"] == "fast"
    assert large.value == pytest.approx(small.value, abs=1e-12)


def test_fair_predictions_pass_and_biased_fail() -> None:
    rng = np.random.default_rng(9)
    n = 200_000  # above the fairlearn cut-over: exercises the fast path in the gate
    group = pd.Series(rng.choice(["a", "b"], n), name="group")
    y_true = rng.integers(0, 2, n)
    fair = (rng.random(n) < 0.3).astype(int)
    fair_result = fairness_gate(y_true, fair, group)
    assert fair_result.passed, fair_result.message
    biased = np.where(group == "b", rng.random(n) < 0.45, rng.random(n) < 0.3).astype(int)
    r = fairness_gate(y_true, biased, group, max_dp_diff=0.1, max_eo_diff=None)
    assert not r.passed
    assert r.metric == "demographic_parity_difference"
    assert r.value == pytest.approx(0.15, abs=0.01) and r.threshold == 0.1
    assert "group" in r.message
    rates = {g["group"]["group"]: g["selection_rate"] for g in
             r.details["feature_sets"]["group"]["groups"]}  # fmt: skip
    assert rates["b"] - rates["a"] == pytest.approx(r.value, abs=1e-12)


def test_four_fifths_ratio_limit() -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    group = rng.choice(["a", "b"], n)
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(group == "b", rng.random(n) < 0.30, rng.random(n) < 0.40).astype(int)
    r = fairness_gate(y_true, y_pred, group, max_dp_diff=None, max_eo_diff=None, min_dp_ratio=0.8)
    assert not r.passed and r.metric == "demographic_parity_ratio"
    assert r.value == pytest.approx(0.75, abs=0.03)


def test_intersectional_bias_is_caught_when_each_feature_looks_fair() -> None:
    rng = np.random.default_rng(2)
    n = 16_000
    sens = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "race": rng.choice(["p", "q"], n)})
    # XOR pattern: each marginal selection rate is ~0.35, the intersections are 0.2 or 0.5.
    favoured = (sens["sex"] == "F") ^ (sens["race"] == "p")
    y_true = rng.integers(0, 2, n)
    y_pred = (rng.random(n) < np.where(favoured, 0.5, 0.2)).astype(int)
    r = fairness_gate(y_true, y_pred, sens, max_eo_diff=None)
    fs = r.details["feature_sets"]
    assert fs["sex"]["demographic_parity_difference"] < 0.03
    assert fs["race"]["demographic_parity_difference"] < 0.03
    assert fs["sex&race"]["demographic_parity_difference"] > 0.25
    assert not r.passed
    assert [c["feature_set"] for c in r.details["checks"] if not c["passed"]] == ["sex&race"]
    assert fairness_gate(y_true, y_pred, sens, max_eo_diff=None, intersectional=False).passed


def test_small_groups_are_reported_and_excluded() -> None:
    rng = np.random.default_rng(6)
    n = 5_000
    group = np.where(np.arange(n) < 10, "tiny", rng.choice(["a", "b"], n))
    y_true = rng.integers(0, 2, n)
    y_pred = (rng.random(n) < 0.3).astype(int)
    y_pred[:10] = 1  # the tiny group is always selected: it would break parity if counted
    r = fairness_gate(y_true, y_pred, group, min_group_size=30)
    fs = r.details["feature_sets"]["sensitive"]
    assert fs["excluded_groups"] == [{"group": {"sensitive": "tiny"}, "n": 10}]
    assert {g["group"]["sensitive"] for g in fs["groups"]} == {"a", "b"}
    assert r.passed, r.message
    counted = fairness_gate(y_true, y_pred, group, min_group_size=5)
    assert not counted.passed


def test_too_few_groups_left_fails_with_a_reason() -> None:
    rng = np.random.default_rng(8)
    n = 1_000
    group = np.where(np.arange(n) < 20, "small", "big")
    y_true, y_pred = rng.integers(0, 2, n), rng.integers(0, 2, n)
    r = fairness_gate(y_true, y_pred, group, min_group_size=30)
    assert not r.passed
    assert "cannot assess" in r.message and r.details["problems"]


def test_sensitive_columns_by_name() -> None:
    y_true, y_pred, sens = _random_case(7, 3_000)
    data = sens.assign(income=1.0)
    by_name = fairness_gate(y_true, y_pred, ["sex", "band"], data=data, max_dp_diff=1.0)
    by_frame = fairness_gate(y_true, y_pred, sens[["sex", "band"]], max_dp_diff=1.0)
    assert by_name.details["feature_sets"] == by_frame.details["feature_sets"]


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("unknown_column", "sensitive"),
        ("name_without_data", "sensitive"),
        ("length_mismatch", "y_true"),
        ("sensitive_length", "y_true"),
        ("single_class", "y_true"),
        ("scores_not_labels", "y_pred"),
        ("nan_sensitive", "sensitive"),
        ("nan_labels", "y_true"),
        ("empty", "y_true"),
        ("no_limits", "max_dp_diff"),
        ("min_group_size", "min_group_size"),
    ],
)
def test_bad_input_is_refused(case: str, field: str) -> None:
    rng = np.random.default_rng(0)
    n = 100
    y_true, y_pred = rng.integers(0, 2, n), rng.integers(0, 2, n)
    sens = pd.DataFrame({"sex": rng.choice(["F", "M"], n)})
    kwargs: dict = {}
    if case == "unknown_column":
        sens, kwargs = ["sex", "race"], {"data": sens}
    elif case == "name_without_data":
        sens = "sex"
    elif case == "length_mismatch":
        y_pred = y_pred[:-1]
    elif case == "sensitive_length":
        sens = sens.iloc[:-1]
    elif case == "single_class":
        y_true = np.ones(n, int)
    elif case == "scores_not_labels":
        y_pred = rng.random(n)
    elif case == "nan_sensitive":
        sens.loc[3, "sex"] = None
    elif case == "nan_labels":
        y_true = y_true.astype(float)
        y_true[5] = np.nan
    elif case == "empty":
        y_true, y_pred, sens = [], [], pd.DataFrame({"sex": []})
    elif case == "no_limits":
        kwargs = {"max_dp_diff": None, "max_eo_diff": None}
    elif case == "min_group_size":
        kwargs = {"min_group_size": 0}
    with pytest.raises(InvalidInput) as err:
        fairness_gate(y_true, y_pred, sens, **kwargs)
    assert err.value.field == field
    if case == "unknown_column":
        assert "race" in str(err.value)
