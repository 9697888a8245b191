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
