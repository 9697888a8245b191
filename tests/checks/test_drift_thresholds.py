"""Drift thresholds at their edges: reaching a threshold counts, float error does not hide it.

Each test pins one boundary that a one-character change in checks/drift.py would move.
"""

from __future__ import annotations

import inspect
import math
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from checks.drift import TOLERANCE, DriftReference, drift_gate
from registry.policy import DriftPolicy, Policy

README = Path(__file__).resolve().parents[2] / "README.md"


def _normal(shift: float = 0.0, seed: int = 4, n: int = 5_000) -> pd.DataFrame:
    return pd.DataFrame({"x": np.random.default_rng(seed).normal(size=n) + shift})


@pytest.fixture(scope="module")
def ref() -> DriftReference:
    return DriftReference.fit(_normal(seed=3))


def _feature(result, name: str = "x") -> dict:
    return result.details["features"][name]


def _psi(ref: DriftReference, cur: pd.DataFrame) -> float:
    value = _feature(drift_gate(ref, cur))["value"]
    assert value is not None and value > 0
    return value


def _threshold_just_reached_by(value: float) -> float:
    """The largest threshold ``t`` whose ``t - TOLERANCE`` still equals ``value`` exactly."""
    t = value + TOLERANCE
    while t - TOLERANCE > value:
        t = math.nextafter(t, -math.inf)
    while t - TOLERANCE < value:
        t = math.nextafter(t, math.inf)
    assert t - TOLERANCE == value
    while math.nextafter(t, math.inf) - TOLERANCE == value:
        t = math.nextafter(t, math.inf)
    return t


def test_psi_exactly_at_act_acts_and_at_warn_warns(ref: DriftReference) -> None:
    cur = _normal(shift=0.4)
    v = _psi(ref, cur)
    at_act = drift_gate(ref, cur, warn=v / 2, act=v)
    assert _feature(at_act)["status"] == "act"
    assert at_act.details["verdict"] == "act" and not at_act.passed
    at_warn = drift_gate(ref, cur, warn=v, act=2 * v)
    assert _feature(at_warn)["status"] == "warn"
    below = drift_gate(ref, cur, warn=2 * v, act=3 * v)
    assert _feature(below)["status"] == "ok" and below.details["verdict"] == "ok"


def test_a_score_within_the_tolerance_reaches_the_threshold_and_one_beyond_does_not(
    ref: DriftReference,
) -> None:
    cur = _normal(shift=0.4)
    v = _psi(ref, cur)
    t = _threshold_just_reached_by(v)
    assert t > v  # the score is below the threshold as a float, by at most the tolerance
    assert _feature(drift_gate(ref, cur, warn=v / 2, act=t))["status"] == "act"
    assert _feature(drift_gate(ref, cur, warn=t, act=2 * t))["status"] == "warn"
    past = math.nextafter(t, math.inf)
    assert past - TOLERANCE > v
    assert _feature(drift_gate(ref, cur, warn=v / 2, act=past))["status"] == "warn"
    assert _feature(drift_gate(ref, cur, warn=past, act=2 * past))["status"] == "ok"


def test_js_distance_exactly_at_its_thresholds() -> None:
    rng = np.random.default_rng(5)
    train = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 4_000, p=[0.6, 0.3, 0.1])})
    cur = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 4_000, p=[0.3, 0.3, 0.4])})
    ref = DriftReference.fit(train)
    v = _feature(drift_gate(ref, cur), "c")["value"]
    assert v > 0
    assert _feature(drift_gate(ref, cur, js_warn=v / 2, js_act=v), "c")["status"] == "act"
    assert _feature(drift_gate(ref, cur, js_warn=v, js_act=2 * v), "c")["status"] == "warn"
    assert _feature(drift_gate(ref, cur, js_warn=2 * v, js_act=3 * v), "c")["status"] == "ok"


def _hundred(missing: int) -> pd.DataFrame:
    """0..99 with ``missing`` values removed evenly across the deciles (one per decile step)."""
    x = np.arange(100, dtype=float)
    for i in range(missing):
        x[i * (100 // missing)] = np.nan
    return pd.DataFrame({"x": x})


def test_ten_more_points_missing_is_a_change_of_exactly_the_act_threshold() -> None:
    ref = DriftReference.fit(_hundred(0))
    cur = _hundred(10)  # 1 - 90/100 == 0.09999999999999998 in floats
    feat = _feature(drift_gate(ref, cur))
    assert feat["nan_rate_change"] == 1 - 90 / 100 and feat["nan_rate_change"] < 0.10
    assert feat["value"] < 0.01  # one value gone from each decile: the shape is unchanged
    assert feat["status"] == "act"
    assert feat["status_reason"] == "missing-value rate changed"
    assert drift_gate(ref, cur, nan_warn=0.05, nan_act=0.2).details["features"]["x"]["status"] == "warn"


def test_a_drop_in_missing_rate_counts_like_a_rise() -> None:
    ref = DriftReference.fit(_hundred(10))
    feat = _feature(drift_gate(ref, _hundred(0)))
    assert feat["nan_rate_change"] < 0  # fewer missing values than the reference
    assert feat["value"] < 0.1
    assert feat["status"] == "act" and feat["status_reason"] == "missing-value rate changed"
    warned = _feature(drift_gate(ref, _hundred(0), nan_warn=0.05, nan_act=0.5))
    assert warned["status"] == "warn"


def test_a_small_missing_rate_change_stays_ok() -> None:
    ref = DriftReference.fit(_hundred(0))
    feat = _feature(drift_gate(ref, _hundred(2)))
    assert feat["nan_rate_change"] == pytest.approx(0.02)
    assert feat["status"] == "ok" and "status_reason" not in feat


def test_warn_verdict_passes_the_gate_and_act_fails_it(ref: DriftReference) -> None:
    warned = drift_gate(ref, _normal(shift=0.4))  # PSI about 0.16: between 0.1 and 0.25
    assert warned.details["verdict"] == "warn" and warned.details["warned"] == ["x"]
    assert warned.passed is True
    acted = drift_gate(ref, _normal(shift=0.7))
    assert acted.details["verdict"] == "act" and acted.details["drifted"] == ["x"]
    assert acted.passed is False


def test_share_exactly_at_drift_share_is_drift(ref: DriftReference) -> None:
    two = DriftReference.fit(_normal(seed=3).assign(y=_normal(seed=6)["x"]))
    cur = _normal(shift=0.7).assign(y=_normal(seed=7)["x"])  # x acts, y is unchanged
    r = drift_gate(two, cur, drift_share=0.5)
    assert r.value == 0.5 and r.details["drifted"] == ["x"]
    assert r.details["verdict"] == "act" and not r.passed
    r = drift_gate(two, cur, drift_share=0.75)
    assert r.details["verdict"] == "warn" and r.passed


def test_psi_of_0_3_acts_under_the_default_thresholds(ref: DriftReference) -> None:
    cur = _normal(shift=0.55)
    v = _psi(ref, cur)
    assert 0.25 < v < 0.5  # acts at the documented 0.25; would not at a doubled default
    assert _feature(drift_gate(ref, cur))["status"] == "act"
    policy = Policy().drift
    by_policy = drift_gate(ref, cur, warn=policy.warn, act=policy.act, drift_share=policy.drift_share)
    assert _feature(by_policy)["status"] == "act" and not by_policy.passed
    mild = _normal(shift=0.4)
    assert 0.1 < _psi(ref, mild) < 0.25
    assert _feature(drift_gate(ref, mild))["status"] == "warn"
    assert _feature(drift_gate(ref, mild, warn=policy.warn, act=policy.act))["status"] == "warn"


def test_defaults_match_the_documented_policy() -> None:
    block = re.search(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block, "README shows a policy file"
    documented = tomllib.loads(block.group(1))["drift"]
    defaults = inspect.signature(drift_gate).parameters
    assert defaults["warn"].default == DriftPolicy().warn == documented["warn"]
    assert defaults["act"].default == DriftPolicy().act == documented["act"]
    assert defaults["drift_share"].default == DriftPolicy().drift_share == 0.5
    assert defaults["nan_act"].default == 0.10 and defaults["nan_warn"].default == 0.05


# --- the evidence the gate stores: its shape is read by the monitor flow and the CLI -----------


def test_result_fields_and_details_shape() -> None:
    rng = np.random.default_rng(8)
    train = pd.DataFrame({"x": rng.normal(size=2_000), "c": rng.choice(["a", "b"], 2_000)})
    cur = pd.DataFrame({"x": rng.normal(size=500) + 0.4, "c": rng.choice(["a", "b"], 500, p=[0.2, 0.8])})
    r = drift_gate(DriftReference.fit(train), cur, ks_alpha=0.05)
    assert (r.name, r.metric, r.threshold) == ("drift", "drifted_feature_share", 0.5)
    assert 0 < r.duration < 60
    d = r.details
    assert set(d) == {
        "verdict", "drifted", "missing_inputs", "warned", "max_psi", "max_psi_feature", "max_js", "max_js_feature",
        "n_rows", "thresholds", "features",
    }  # fmt: skip
    assert d["n_rows"] == 500
    assert d["thresholds"] == {
        "psi": [0.1, 0.25],
        "js": [math.sqrt(0.1 / 8), math.sqrt(0.25 / 8)],
        "nan_change": [0.05, 0.10],
        "drift_share": 0.5,
        "ks_alpha": 0.05,
        "ks_max_n": 1000,
    }
    x, c = d["features"]["x"], d["features"]["c"]
    assert (d["max_psi_feature"], d["max_psi"]) == ("x", x["value"])
    assert (d["max_js_feature"], d["max_js"]) == ("c", c["value"])
    assert {"kind", "n", "method", "value", "status", "reference_shares", "current_shares"} <= set(x)
    assert {"ks_statistic", "ks_pvalue", "nan_rate_reference", "nan_rate_current", "nan_rate_change"} <= set(
        x
    )
    assert (x["kind"], x["method"], x["n"]) == ("numeric", "psi", 500)
    assert len(x["current_shares"]) == len(x["reference_shares"]) == 10
    assert sum(x["current_shares"]) == pytest.approx(1)
    assert (c["kind"], c["method"], c["n"]) == ("categorical", "jensenshannon", 500)
    assert {"unseen_share", "unseen_examples"} <= set(c)
    verdict, worst = d["verdict"], max(x["status"], c["status"], key=["ok", "warn", "act"].index)
    assert r.message.startswith(f"verdict {verdict}: ") and f"max PSI {x['value']:.3g} on x" in r.message
    assert worst != "ok"


def test_message_without_numeric_features() -> None:
    ref = DriftReference.fit(pd.DataFrame({"c": ["a", "b"] * 500}))
    r = drift_gate(ref, pd.DataFrame({"c": ["a", "b"] * 100}))
    assert r.message == "verdict ok: 0/1 features drifted (share 0.00, act at 0.5), 0 warn"
    assert r.details["max_psi"] is None and r.details["max_psi_feature"] is None


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_feature_with_no_values_is_judged_on_missing_rate(kind: str) -> None:
    col = np.arange(200, dtype=float) if kind == "numeric" else np.array(["a", "b"] * 100, dtype=object)
    ref = DriftReference.fit(pd.DataFrame({"f": col}))
    empty = pd.Series([np.nan] * 50, dtype=float if kind == "numeric" else object)
    feat = drift_gate(ref, pd.DataFrame({"f": empty})).details["features"]["f"]
    assert feat["kind"] == kind and feat["n"] == 0 and feat["value"] is None
    assert feat["method"] == ("psi" if kind == "numeric" else "jensenshannon")
    assert feat["note"] == "no non-missing values; judged on missing rate"
    assert feat["status"] == "act" and feat["status_reason"] == "missing-value rate changed"
    one = empty.copy()
    one.iloc[0] = col[0]  # a single value is scored, not treated as empty
    scored = drift_gate(ref, pd.DataFrame({"f": one})).details["features"]["f"]
    assert scored["n"] == 1 and scored["value"] is not None and "note" not in scored


def test_current_data_problems_carry_their_note() -> None:
    ref = DriftReference.fit(_normal(seed=3, n=500))
    cases = {
        "empty": (pd.DataFrame({"x": pd.Series([], dtype=float)}), "current data has no rows"),
        "missing": (pd.DataFrame({"y": [1.0]}), "feature missing from current data"),
        "dtype": (
            text := pd.DataFrame({"x": ["a", "b"]}),
            f"expected a numeric column, got dtype {text['x'].dtype}",
        ),
    }
    for method, (cur, note) in cases.items():
        feat = drift_gate(ref, cur).details["features"]["x"]
        assert feat == feat | {"method": method, "value": None, "status": "act", "note": note}


def test_categories_absent_now_and_unseen_before_are_scored_like_scipy() -> None:
    from scipy.spatial.distance import jensenshannon

    train = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 6 + ["e"] * 4})
    ref = DriftReference.fit(train, max_categories=3)  # d and e pooled as <other> (10%)
    cur = pd.DataFrame({"c": ["a"] * 60 + [f"new{i}" for i in range(7)] * 5 + ["e"] * 5})  # no b, c
    feat = drift_gate(ref, cur).details["features"]["c"]
    p = np.array([0.5, 0.3, 0.1, 0.1])  # a, b, c, <other>
    q = np.array([60, 0, 0, 40]) / 100  # 7 new categories and e fall in <other>
    assert feat["value"] == pytest.approx(jensenshannon(p, q), abs=1e-12)
    assert feat["unseen_share"] == pytest.approx(0.40)
    assert len(feat["unseen_examples"]) == 5 and set(feat["unseen_examples"]) <= {
        f"new{i}" for i in range(7)
    } | {"e"}


def test_js_distance_of_disjoint_shares_raises_no_float_warning() -> None:
    import warnings

    from checks.drift import js_distance

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(
            math.sqrt(math.log(2))
        )
        assert js_distance(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.5, 0.0])) == 0.0


def test_ks_runs_up_to_ks_max_n_values_inclusive() -> None:
    ref = DriftReference.fit(_normal(seed=3, n=2_000))
    at = drift_gate(ref, _normal(seed=9, n=50), ks_alpha=0.05, ks_max_n=50).details["features"]["x"]
    assert "ks_pvalue" in at and "ks_statistic" in at
    over = drift_gate(ref, _normal(seed=9, n=51), ks_alpha=0.05, ks_max_n=50).details["features"]["x"]
    assert over["ks"] == "skipped: 51 values > ks_max_n=50" and "ks_pvalue" not in over
    default = drift_gate(ref, _normal(seed=9, n=1_001), ks_alpha=0.05).details["features"]["x"]
    assert default["ks"] == "skipped: 1001 values > ks_max_n=1000"
    shifted = drift_gate(ref, _normal(shift=0.6, seed=9, n=200), ks_alpha=0.05, warn=5, act=6)
    feat = shifted.details["features"]["x"]
    assert feat["ks_pvalue"] < 0.05 and feat["status"] == "warn"
    assert feat["status_reason"] == "KS p < 0.05 on a small sample"


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"warn": 0.0, "act": 0.2}, "warn", "warn thresholds must satisfy 0 < warn ≤ act"),
        ({"warn": -0.1, "act": 0.2}, "warn", "warn thresholds must satisfy 0 < warn ≤ act"),
        ({"warn": 0.1, "act": -0.2}, "warn", "warn thresholds must satisfy 0 < warn ≤ act"),
        ({"js_warn": 0.3, "js_act": 0.2}, "js_warn", "js_warn thresholds must satisfy 0 < warn ≤ act"),
        ({"nan_warn": 0.3, "nan_act": 0.2}, "nan_warn", "nan_warn thresholds must satisfy 0 < warn ≤ act"),
        ({"act": math.inf}, "warn", "warn thresholds must satisfy 0 < warn ≤ act"),
        ({"drift_share": 1.5}, "drift_share", "drift_share must be in (0, 1]"),
        ({"drift_share": 0.0}, "drift_share", "drift_share must be in (0, 1]"),
    ],
)
def test_bad_thresholds_are_refused_with_the_field(kwargs: dict, field: str, message: str) -> None:
    from registry.errors import InvalidInput

    ref = DriftReference.fit(_normal(seed=3, n=200))
    with pytest.raises(InvalidInput) as err:
        drift_gate(ref, _normal(n=100), **kwargs)
    assert err.value.field == field
    assert message in str(err.value)


def test_edge_thresholds_that_are_allowed() -> None:
    ref = DriftReference.fit(_normal(seed=3, n=500))
    cur = _normal(shift=0.4, n=500)
    assert drift_gate(ref, cur, warn=0.2, act=0.2).details["thresholds"]["psi"] == [0.2, 0.2]
    assert drift_gate(ref, cur, drift_share=1.0).threshold == 1.0


def test_refusals_name_what_is_wrong() -> None:
    from registry.errors import InvalidInput

    ref = DriftReference.fit(_normal(seed=3, n=200))
    with pytest.raises(InvalidInput, match="current_df must be a DataFrame"):
        drift_gate(ref, [1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="invalid drift reference: "):
        drift_gate({"features": {}, "n_rows": -1}, _normal(n=10))
