"""Saving and loading model objects through the server: skops by default, audited pickle opt-in."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from registry import errors
from registry.policy import Policy


def _model() -> LogisticRegression:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


def test_register_model_and_load_it_back(registry_server: Any, tmp_path: Any) -> None:
    h = registry_server
    pipe = h.client(h.token("pipeline", name="pip"))
    est = _model()
    mv = pipe.register_model("churn", est, metrics={"auc": 0.8})
    assert mv.artifact.format == "skops"
    reader = h.client(h.token("reader", name="rd"))
    loaded = reader.load_model("churn/1", cache_dir=tmp_path / "cache")
    x = np.ones((2, 3))
    assert (loaded.predict(x) == est.predict(x)).all()


def test_pickle_is_refused_under_the_stored_policy_and_audited_when_allowed(
    registry_server: Any, unchanged: Any
) -> None:
    h = registry_server
    pipe = h.client(h.token("pipeline", name="pk"))
    with unchanged(), pytest.raises(errors.UnsafeModel):
        pipe.register_model("churn", _model(), allow_pickle=True)
    h.client().set_policy(Policy(authenticated_approvals=True, allow_pickle=True), reason="legacy model")
    pipe.register_model("churn", _model(), allow_pickle=True)
    ops = h.client(h.token("operator", name="op"))
    with unchanged(), pytest.raises(errors.UnsafeModel):
        ops.load_model("churn/1")  # no opt-in on this side
    ops.load_model("churn/1", allow_pickle=True)
    event = ops.audit_log("churn")[-1]
    assert event.action == "model.pickle_loaded" and event.actor == "op"
    assert event.payload["via"]["principal"] == "op"
    reader = h.client(h.token("reader", name="rd"))  # a load it may not audit is a load it may not do
    with unchanged(), pytest.raises(errors.Forbidden, match="rd may not record a pickle load"):
        reader.load_model("churn/1", allow_pickle=True)
