"""Bring-your-own data against a real Prefect server: bad data stops before training, Yes/No
targets, split lineage, and labelled monitoring data that lacks a model input."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from checks.drift import DriftReference
from flows import training
from flows.config import EstimatorSpec
from flows.monitor import monitor
from flows.retrain import retrain
from registry.errors import ModelNotFound
from tests.fixtures.prefect import wait_for
from tests.flows.conftest import Pipeline, with_config

MODEL = "credit-risk"


def _data(pipeline: Pipeline, period: str = "base") -> dict[str, Path]:
    return {k: Path(v) for k, v in yaml.safe_load(getattr(pipeline, period).read_text())["data"].items()}


def _nothing_registered(pipeline: Pipeline) -> None:
    reg = pipeline.registry()
    try:
        with pytest.raises(ModelNotFound):
            reg.versions(MODEL)
        assert not [e for e in reg.audit_log() if e.model == MODEL]
    finally:
        reg.close()


def test_stray_strings_fail_the_data_gate_before_training_and_register_nothing(pipeline: Pipeline) -> None:
    frame = pd.read_csv(_data(pipeline)["train"])
    income = frame["income"].astype(str).astype(object)
    income[3] = "22.5%"  # one stray string: without the check, income became a one-hot category
    spoiled = pipeline.folder / "spoiled.csv"
    frame.assign(income=income).to_csv(spoiled, index=False)
    config = with_config(
        pipeline.base, contract=None, data={"train": str(spoiled), "eval": str(_data(pipeline)["eval"])}
    )
    result = retrain(str(config))
    assert (result["outcome"], result["version"], result["gates_passed"]) == ("gates-failed", None, False)
    gate = result["data_gate"]
    assert gate["name"] == "data" and not gate["passed"]
    assert "income: numeric_with_strays (e.g. '22.5%')" in gate["message"]
    stray = next(f for f in gate["details"]["failures"] if f["expectation"] == "numeric_with_strays")
    assert "income (eval): type_drift" in gate["message"]  # the clean eval file no longer matches train
    assert stray["sample"] == ["22.5%"] and stray["sample_rows"] == [3]
    assert result["reason"].startswith("data gate failed: ")
    _nothing_registered(pipeline)


def test_header_only_and_incomplete_sensitive_data_fail_the_gate_not_sklearn(pipeline: Pipeline) -> None:
    header = pipeline.folder / "header.csv"
    header.write_text(_data(pipeline)["train"].read_text().splitlines()[0] + "\n")
    config = with_config(pipeline.base, data={"train": str(header), "eval": str(_data(pipeline)["eval"])})
    result = retrain(str(config))
    assert result["outcome"] == "gates-failed" and "train: no rows" in str(result["data_gate"]["details"])
    frame = pd.read_csv(_data(pipeline)["eval"])
    frame.loc[::40, "sex"] = None  # found only after registration before: an orphan version
    holes = pipeline.folder / "holes.csv"
    frame.to_csv(holes, index=False)
    config = with_config(pipeline.base, data={"train": str(_data(pipeline)["train"]), "eval": str(holes)})
    result = retrain(str(config))
    assert result["outcome"] == "gates-failed" and "sex (eval): complete" in result["data_gate"]["message"]
    _nothing_registered(pipeline)


def test_a_yes_no_target_from_one_split_file(pipeline: Pipeline) -> None:
    paths = _data(pipeline)
    full = pd.concat([pd.read_csv(paths["train"]), pd.read_csv(paths["eval"])], ignore_index=True)
    full["default"] = full["default"].map({1: "Yes", 0: "No"})
    one = pipeline.folder / "all.csv"
    full.to_csv(one, index=False)
    config = with_config(
        pipeline.base,
        contract=None,
        positive_label="Yes",
        data={"path": str(one), "split": {"seed": 7, "eval_fraction": 0.3}},
        # Fails on purpose (nothing scores 0.999), so the run ends without waiting for approval.
        gates={"metrics": {"roc_auc": {"min": 0.999}}, "fairness": {"max_dp_diff": 0.5}},
    )
    result = retrain(str(config))
    assert result["outcome"] == "gates-failed" and result["version"] == 1
    assert 0.6 < result["metrics"]["roc_auc"] < 0.999  # was "roc_auc is undefined (got nan)"
    reg = pipeline.registry()
    try:
        v = reg.get_version(MODEL, 1)
    finally:
        reg.close()
    assert v.tags["positive_label"] == "Yes"
    assert (v.tags["split_seed"], v.tags["split_eval_fraction"]) == ("7", "0.3")
    assert v.tags["split_source_sha256"] == hashlib.sha256(one.read_bytes()).hexdigest()
    train, evaluation = sorted(v.lineage.datasets, key=lambda d: d.role.value != "train")
    assert (train.role.value, evaluation.role.value) == ("train", "eval")
    assert train.sha256 != evaluation.sha256 and train.rows + evaluation.rows == len(full)
    assert train.uri.endswith("#split=train&seed=7&eval_fraction=0.3") and "#split=eval" in evaluation.uri
    fairness = next(e for e in v.evidence if e.gate == "fairness")
    assert fairness.details["limits"]["equalized_odds_difference"] is None  # off, not a silent 0.1


def _production(pipeline: Pipeline) -> list[str]:
    """A real model in production, trained on the base period; returns its input columns."""
    frame = pd.read_csv(_data(pipeline)["train"])
    x = frame.drop(columns=["default", "sex"])
    model = training.train(EstimatorSpec(params={"max_iter": 1000}), x, frame["default"])
    reg = pipeline.registry()
    try:
        v = reg.register_model(
            MODEL,
            model,
            actor="alice",
            input_schema=training.input_schema(x),
            drift_reference=DriftReference.fit(x).model_dump(mode="json"),
        )
        reg.transition(MODEL, v.version, "staging", actor="alice")
        reg.approve(MODEL, v.version, actor="risk-officer")
        reg.transition(MODEL, v.version, "production", actor="risk-officer")
    finally:
        reg.close()
    return list(x.columns)


def test_labelled_data_lacking_a_feature_is_drift_to_act_on_not_a_key_error(pipeline: Pipeline) -> None:
    inputs = _production(pipeline)
    labelled = pd.read_csv(pipeline.stable).drop(columns=["income"])
    assert "default" in labelled.columns and "income" in inputs
    data = pipeline.folder / "no-income.csv"
    labelled.to_csv(data, index=False)
    start = datetime.now(UTC)
    result = monitor(str(pipeline.base), str(data))
    assert result["outcome"] == "act" and result["missing_inputs"] == ["income"]
    reg = pipeline.registry()
    try:
        evidence = [e for e in reg.get_version(MODEL, 1).evidence if e.gate == "monitor.drift"]
    finally:
        reg.close()
    assert len(evidence) == 1 and not evidence[0].passed
    assert evidence[0].details["missing_inputs"] == ["income"]
    assert evidence[0].details["features"]["income"]["status"] == "act"

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    flt = EventFilter(
        event=EventNameFilter(name=["govflow.model.drift-detected"]),
        occurred=EventOccurredFilter(since=start),
    )

    def seen() -> list:
        with get_client(sync_client=True) as client:
            return [e for e in client.read_events(filter=flt, limit=10).events if e.payload.get("data")]

    event = wait_for(seen, timeout=30, what="the drift-detected event")[0]
    assert event.payload["missing_inputs"] == ["income"] and event.payload["verdict"] == "act"
