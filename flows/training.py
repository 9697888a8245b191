"""Building, training and scoring the estimator (plain scikit-learn, no Prefect)."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from flows.config import EstimatorSpec
from registry.errors import InvalidInput

SCORE_METRICS = {"roc_auc", "log_loss"}


def build(spec: EstimatorSpec, frame: pd.DataFrame) -> BaseEstimator:
    """Instantiate the configured estimator, wrapped in tabular preprocessing by default."""
    module_name, _, cls_name = spec.import_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
        final = cls(**spec.params)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidInput(
            f"estimator.import_path: cannot load {spec.import_path!r}: {exc}", field="estimator"
        ) from exc
    except TypeError as exc:
        raise InvalidInput(f"estimator.params: {exc}", field="estimator.params") from exc
    if not spec.preprocess:
        return final
    numeric = [
        c
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    categorical = [c for c in frame.columns if c not in numeric]
    pre = ColumnTransformer(
        [
            (
                "num",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                numeric,
            ),
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            ),
        ]
    )
    return Pipeline([("pre", pre), ("model", final)])


def train(spec: EstimatorSpec, x: pd.DataFrame, y: pd.Series) -> BaseEstimator:
    """Fit a fresh estimator on ``x``/``y``."""
    model = build(spec, x)
    model.fit(x, y)
    return model


def predictions(model: Any, x: pd.DataFrame, task: str, positive: Any = None) -> dict[str, np.ndarray]:
    """Labels (``pred``) and, for classifiers with probabilities, positive-class scores (``score``).

    The score is the probability of ``positive`` (the config's positive label) when the model
    knows that class; otherwise of the second class, which is 1 for 0/1 and True for booleans.
    """
    out = {"pred": np.asarray(model.predict(x))}
    if task == "classification" and hasattr(model, "predict_proba"):
        classes = [c.item() if hasattr(c, "item") else c for c in getattr(model, "classes_", [])]
        column = classes.index(positive) if positive is not None and positive in classes else 1
        out["score"] = np.asarray(model.predict_proba(x))[:, column]
    return out


def metric_input(preds: dict[str, np.ndarray], metric: str) -> np.ndarray:
    """Scores for ranking/probability metrics, labels for the rest."""
    return preds["score"] if metric in SCORE_METRICS and "score" in preds else preds["pred"]


def input_schema(x: pd.DataFrame) -> list[dict[str, str]]:
    """The input columns and dtypes the model expects, stored on the version."""
    return [{"name": str(c), "dtype": str(t)} for c, t in x.dtypes.items()]
