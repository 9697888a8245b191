"""Metric threshold gate: one scikit-learn metric against a minimum and/or maximum.

Bad input policy (shared by all gates): inputs that define the measurement, here labels and
predictions, are refused with ``InvalidInput`` when malformed or when the metric is undefined on
them; a well-defined metric outside its bounds is a failed ``GateResult``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, get_args

import numpy as np
from sklearn import metrics as skm

from checks._inputs import as_1d, as_scores, finite_or_none, no_missing, same_length
from checks.result import GateResult
from registry.errors import InvalidInput, map_exceptions

Metric = Literal["accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2"]
METRICS: tuple[str, ...] = get_args(Metric)
LABEL_METRICS = frozenset({"accuracy", "balanced_accuracy", "f1"})
SCORE_METRICS = frozenset({"roc_auc", "log_loss"})
REGRESSION_METRICS = frozenset({"rmse", "mae", "r2"})
# Direction is reported in the evidence so a reader knows which bound is the meaningful one.
HIGHER_IS_BETTER = {m: m not in {"log_loss", "rmse", "mae"} for m in METRICS}


def metric_gate(
    y_true: Any,
    y_pred_or_score: Any,
    metric: Metric,
    min: float | None = None,  # noqa: A002 - the issue's public signature
    max: float | None = None,  # noqa: A002
    *,
    name: str | None = None,
    pos_label: Any = 1,
) -> GateResult:
    """Compute ``metric`` with scikit-learn and pass when it lies within ``[min, max]``.

    Label metrics (accuracy, balanced_accuracy, f1) take predicted labels; f1 is binary on
    ``pos_label`` for two classes and macro-averaged otherwise. Score metrics take scores:
    roc_auc a 1-D positive-class score or a 2-D class-probability matrix (one-vs-rest), log_loss
    probabilities likewise. Regression metrics (rmse, mae, r2) take numeric predictions.

    Refuses with ``InvalidInput``: an unknown metric; neither bound or ``min > max``; empty or
    mismatched inputs; missing values; 2-D input to a label metric; a single-class ``y_true``
    for roc_auc/log_loss (undefined); fewer than two rows for r2; anything scikit-learn rejects.
    """
    start = time.perf_counter()
    if metric not in METRICS:
        raise InvalidInput(f"unknown metric {metric!r}; expected one of {METRICS}", field="metric")
    lo, hi = finite_or_none(min, "min"), finite_or_none(max, "max")
    if lo is None and hi is None:
        raise InvalidInput("a metric gate needs min, max or both", field="min")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInput(f"min {lo} is above max {hi}", field="min")

    value, n = _score(y_true, y_pred_or_score, metric, pos_label)
    passed = (lo is None or value >= lo) and (hi is None or value <= hi)
    bounds = " and ".join(
        s for s in (f">= {lo:g}" if lo is not None else "", f"<= {hi:g}" if hi is not None else "") if s
    )
    return GateResult(
        name=name or f"performance.{metric}",
        passed=passed,
        metric=metric,
        value=value,
        threshold=lo if lo is not None else hi,
        details={
            "min": lo,
            "max": hi,
            "n": n,
            "higher_is_better": HIGHER_IS_BETTER[metric],
        },
        duration=time.perf_counter() - start,
        message=f"{metric} = {value:.6g}, required {bounds}: {'pass' if passed else 'FAIL'}",
    )


def score(y_true: Any, y_pred_or_score: Any, metric: Metric, *, pos_label: Any = 1) -> float:
    """The value of ``metric``, with the same input rules and refusals as ``metric_gate``."""
    if metric not in METRICS:
        raise InvalidInput(f"unknown metric {metric!r}; expected one of {METRICS}", field="metric")
    return _score(y_true, y_pred_or_score, metric, pos_label)[0]


def _score(y_true: Any, y_pred_or_score: Any, metric: str, pos_label: Any) -> tuple[float, int]:
    y = no_missing(as_1d(y_true, "y_true"), "y_true")
    if metric in LABEL_METRICS:
        pred = as_1d(y_pred_or_score, "y_pred_or_score")
        no_missing(pred, "y_pred_or_score")
    else:
        pred = as_scores(y_pred_or_score, "y_pred_or_score")
    n = same_length(y_true=y, y_pred_or_score=pred)
    return _compute(metric, y, pred, pos_label), n


def _compute(metric: str, y: np.ndarray, pred: np.ndarray, pos_label: Any) -> float:
    fn = _METRIC_FUNCS[metric]
    with map_exceptions({ValueError: _sklearn_refusal(metric), TypeError: _sklearn_refusal(metric)}):
        value = float(fn(y, pred, pos_label))
    if not np.isfinite(value):
        raise InvalidInput(f"{metric} is undefined on this input (got {value})", field="y_true")
    return value


def _sklearn_refusal(metric: str) -> Callable[[BaseException], InvalidInput]:
    return lambda exc: InvalidInput(f"{metric} cannot be computed: {exc}", field="y_true")


def _two_classes(metric: str, y: np.ndarray) -> None:
    if np.unique(y).size < 2:
        raise InvalidInput(f"{metric} is undefined when y_true has a single class", field="y_true")


def _f1(y: np.ndarray, pred: np.ndarray, pos_label: Any) -> float:
    n_classes = np.unique(np.concatenate([y, pred])).size
    if n_classes <= 2:
        return skm.f1_score(y, pred, pos_label=pos_label, average="binary")
    return skm.f1_score(y, pred, average="macro")


def _positive_present(metric: str, y: np.ndarray, pos_label: Any) -> None:
    # Otherwise y == pos_label is all False and the metric is NaN ("undefined"), naming nothing.
    if not (y == pos_label).any():
        values = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in np.unique(y)[:5])
        raise InvalidInput(
            f"{metric}: the positive label {pos_label!r} is not among the labels ({values}); "
            "set positive_label to the value that counts as positive",
            field="positive_label",
        )


def _roc_auc(y: np.ndarray, score: np.ndarray, pos_label: Any) -> float:
    _two_classes("roc_auc", y)
    if score.ndim == 2:
        return skm.roc_auc_score(y, score, multi_class="ovr")
    _positive_present("roc_auc", y, pos_label)
    # roc_auc_score ranks on the larger label; map so that pos_label is the positive class.
    return skm.roc_auc_score(y == pos_label, score)


def _log_loss(y: np.ndarray, proba: np.ndarray, pos_label: Any) -> float:
    _two_classes("log_loss", y)
    if proba.ndim == 1:
        _positive_present("log_loss", y, pos_label)
        return skm.log_loss(y == pos_label, proba, labels=[False, True])
    return skm.log_loss(y, proba)


def _regression(fn: Callable[..., float]) -> Callable[[np.ndarray, np.ndarray, Any], float]:
    def compute(y: np.ndarray, pred: np.ndarray, _pos: Any) -> float:
        if pred.ndim != 1:
            raise InvalidInput("regression metrics need 1-D predictions", field="y_pred_or_score")
        y = as_scores(y, "y_true")
        if fn is skm.r2_score and y.size < 2:
            raise InvalidInput("r2 needs at least two rows", field="y_true")
        return fn(y, pred)

    return compute


_METRIC_FUNCS: dict[str, Callable[[np.ndarray, np.ndarray, Any], float]] = {
    "accuracy": lambda y, p, _: skm.accuracy_score(y, p),
    "balanced_accuracy": lambda y, p, _: skm.balanced_accuracy_score(y, p),
    "f1": _f1,
    "roc_auc": _roc_auc,
    "log_loss": _log_loss,
    "rmse": _regression(skm.root_mean_squared_error),
    "mae": _regression(skm.mean_absolute_error),
    "r2": _regression(skm.r2_score),
}
