"""Metric threshold gate and champion/challenger gate."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from checks.champion import champion_gate
from checks.performance import metric_gate
from registry.errors import InvalidInput

RNG = np.random.default_rng(11)
N = 2_000
Y = RNG.integers(0, 2, N)
GOOD_SCORE = np.clip(Y * 0.6 + RNG.normal(0.2, 0.2, N), 0.001, 0.999)  # informative
BAD_SCORE = RNG.random(N)  # coin flip


GOOD_LABELS, BAD_LABELS = (GOOD_SCORE > 0.5).astype(int), (BAD_SCORE > 0.5).astype(int)


@pytest.mark.parametrize(
    ("metric", "good", "bad", "bound", "reference"),
    [
        ("accuracy", GOOD_LABELS, BAD_LABELS, {"min": 0.8}, skm.accuracy_score),
        ("balanced_accuracy", GOOD_LABELS, BAD_LABELS, {"min": 0.8}, skm.balanced_accuracy_score),
        ("f1", GOOD_LABELS, BAD_LABELS, {"min": 0.8}, skm.f1_score),
        ("roc_auc", GOOD_SCORE, BAD_SCORE, {"min": 0.8}, skm.roc_auc_score),
        ("log_loss", GOOD_SCORE, BAD_SCORE, {"max": 0.5}, skm.log_loss),
    ],
)
def test_classification_metric_passes_good_and_fails_bad(
    metric: str, good: np.ndarray, bad: np.ndarray, bound: dict, reference
) -> None:
    passed = metric_gate(Y, good, metric, **bound)
    failed = metric_gate(Y, bad, metric, **bound)
    assert passed.passed and not failed.passed
    assert passed.value == pytest.approx(reference(Y, good), abs=1e-12)
    assert passed.name == f"performance.{metric}" and passed.metric == metric
    assert "FAIL" in failed.message


def test_regression_metrics() -> None:
    y = RNG.normal(size=500)
    close, far = y + RNG.normal(0, 0.1, 500), y + RNG.normal(0, 2.0, 500)
    assert metric_gate(y, close, "rmse", max=0.2).passed
    assert not metric_gate(y, far, "rmse", max=0.2).passed
    assert metric_gate(y, close, "mae", max=0.2).value == pytest.approx(skm.mean_absolute_error(y, close))
    r2 = metric_gate(y, close, "r2", min=0.9)
    assert r2.passed and r2.value == pytest.approx(skm.r2_score(y, close))
    assert not metric_gate(y, far, "r2", min=0.9).passed


def test_string_labels_use_pos_label_and_both_bounds() -> None:
    y = np.where(Y == 1, "churn", "stay")
    score = GOOD_SCORE
    r = metric_gate(y, score, "roc_auc", min=0.8, max=1.0, pos_label="churn")
    assert r.passed and r.value == pytest.approx(skm.roc_auc_score(Y, score))
    # The same scores read with the other class as positive rank backwards.
    assert not metric_gate(y, score, "roc_auc", min=0.8, pos_label="stay").passed
    assert metric_gate(y, score, "roc_auc", min=0.1, max=0.5, pos_label="churn").passed is False


def test_multiclass_f1_and_roc_auc() -> None:
    y = RNG.integers(0, 3, 600)
    proba = np.full((600, 3), 0.1)
    proba[np.arange(600), y] = 0.8
    assert metric_gate(y, y, "f1", min=0.99).value == pytest.approx(1.0)
    r = metric_gate(y, proba, "roc_auc", min=0.9)
    assert r.passed and r.value == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"y_true": Y, "y_pred_or_score": GOOD_SCORE, "metric": "auc", "min": 0.5}, "metric"),
        ({"y_true": Y, "y_pred_or_score": GOOD_SCORE, "metric": "roc_auc"}, "min"),
        ({"y_true": Y, "y_pred_or_score": GOOD_SCORE, "metric": "roc_auc", "min": 0.9, "max": 0.1},
         "min"),
        ({"y_true": Y[:-1], "y_pred_or_score": GOOD_SCORE, "metric": "roc_auc", "min": 0.5},
         "y_true"),
        ({"y_true": [], "y_pred_or_score": [], "metric": "accuracy", "min": 0.5}, "y_true"),
        ({"y_true": np.ones(10), "y_pred_or_score": np.linspace(0, 1, 10), "metric": "roc_auc",
          "min": 0.5}, "y_true"),
        ({"y_true": np.zeros(10), "y_pred_or_score": np.full(10, 0.2), "metric": "log_loss",
          "max": 0.5}, "y_true"),
        ({"y_true": Y, "y_pred_or_score": np.where(Y == 1, np.nan, 0.3), "metric": "roc_auc",
          "min": 0.5}, "y_pred_or_score"),
        ({"y_true": Y, "y_pred_or_score": np.c_[GOOD_SCORE, 1 - GOOD_SCORE], "metric": "accuracy",
          "min": 0.5}, "y_pred_or_score"),
        ({"y_true": Y, "y_pred_or_score": GOOD_SCORE, "metric": "roc_auc", "min": float("nan")},
         "min"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_the_field_named(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        metric_gate(**kwargs)
    assert err.value.field == field


def test_single_class_accuracy_is_a_computed_result_not_an_error() -> None:
    r = metric_gate(np.ones(20, int), np.zeros(20, int), "accuracy", min=0.5)
    assert not r.passed and r.value == 0.0


# --- champion -----------------------------------------------------------------------------


def test_champion_within_margin_passes_and_beyond_fails() -> None:
    ok = champion_gate(0.795, 0.80, 0.01, metric="roc_auc")
    assert ok.passed and ok.threshold == pytest.approx(0.79)
    assert ok.details["delta"] == pytest.approx(-0.005)
    bad = champion_gate(0.785, 0.80, 0.01, metric="roc_auc")
    assert not bad.passed and "FAIL" in bad.message


def test_champion_lower_is_better() -> None:
    assert champion_gate(0.31, 0.30, 0.02, metric="log_loss", higher_is_better=False).passed
    assert not champion_gate(0.33, 0.30, 0.02, metric="log_loss", higher_is_better=False).passed


def test_negative_margin_demands_improvement() -> None:
    assert not champion_gate(0.80, 0.80, -0.01).passed
    assert champion_gate(0.815, 0.80, -0.01).passed


def test_no_champion_passes_and_says_so() -> None:
    r = champion_gate(0.7, None, 0.01)
    assert r.passed and r.details["no_champion"] is True and r.threshold is None
    assert "no champion" in r.message


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((float("nan"), 0.8, 0.0), "challenger_score"),
        ((None, 0.8, 0.0), "challenger_score"),
        ((0.8, float("inf"), 0.0), "champion_score"),
        ((0.8, 0.8, float("nan")), "margin"),
    ],
)
def test_champion_bad_input(args: tuple, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        champion_gate(*args)
    assert err.value.field == field
