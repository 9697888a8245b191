"""Helpers for the serving tests: data, two distinguishable sklearn pipelines, registry moves."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")
MODEL = "churn"
REGISTRANT, APPROVER = "alice", "bob"
POLL = 0.1  # the server's registry check interval in these tests
TOKEN = "reload-token-for-tests-0123456789"  # the serve_app fixture's reload token
AUTH = {"authorization": f"Bearer {TOKEN}"}


def make_data(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Mixed-type tabular data with a learnable label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50.0, 12.0, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "active": rng.random(n) > 0.4,
        }
    )
    score = (frame["income"] - 50) / 12 + (frame["plan"] == "pro") * 0.8 - (frame["age"] - 50) / 40
    return frame, (score > 0).to_numpy().astype(int)


def train(flip: bool = False) -> Any:
    """A scaler + one-hot + logistic-regression pipeline; ``flip`` learns the inverted label."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, y = make_data()
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("flag", "passthrough", ["active"]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(
        frame, 1 - y if flip else y
    )


def schema() -> list[dict[str, str]]:
    """The input schema of ``make_data`` frames, as stored on a version."""
    frame, _ = make_data(5)
    return [{"name": c, "dtype": str(t)} for c, t in frame.dtypes.items()]


def probe_records(n: int = 20, seed: int = 7) -> list[dict[str, Any]]:
    """JSON-ready records for /predict."""
    frame, _ = make_data(n, seed)
    return [
        {"age": int(r.age), "income": float(r.income), "plan": str(r.plan), "active": bool(r.active)}
        for r in frame.itertuples()
    ]


def wait_for(check: Callable[[], T], *, timeout: float, interval: float = 0.01, what: str = "condition") -> T:
    """Poll ``check`` until it returns a truthy value; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def register(reg: Any, estimator: Any) -> int:
    """Register ``estimator`` as the next version, with its schema and lineage."""
    mv = reg.register_model(
        MODEL,
        estimator,
        actor=REGISTRANT,
        input_schema=schema(),
        lineage={"code": {"repo": "git@example/churn", "commit": "abc1234"}},
        metrics={"auc": 0.9},
    )
    return mv.version


def promote(reg: Any, version: int) -> None:
    """staging -> approve -> production (from development or archived)."""
    reg.transition(MODEL, version, "staging", actor=REGISTRANT)
    reg.approve(MODEL, version, actor=APPROVER)
    reg.transition(MODEL, version, "production", actor=REGISTRANT)


def blob_path(reg: Any, version: int) -> Path:
    """The local artifact store file of a version."""
    sha = reg.get_version(MODEL, version).artifact.sha256
    return Path(reg.artifact_root) / "sha256" / sha[:2] / sha
