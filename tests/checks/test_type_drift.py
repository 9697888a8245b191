"""Type drift and stray strings reach the data gate with sample values, with or without a contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checks.data import validate
from checks.drift import DriftReference, drift_gate
from checks.performance import metric_gate, score
from checks.types import offending_values, stray_strings, type_drift
from registry.errors import InvalidInput


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "rate": rng.normal(5, 1, n).round(2),
            "region": rng.choice(["north", "south"], n),
            "zip": [f"{z:05d}" for z in rng.integers(0, 99999, n)],
        }
    )


def _spoiled(n: int = 200) -> pd.DataFrame:
    # As a CSV reader sees a mortgage file with one '22.5%' and one '?' among the rates.
    df = _frame(n)
    rates = df["rate"].astype(str).astype(object)
    rates[7], rates[42] = "22.5%", "?"
    return df.assign(rate=rates)


def test_a_numeric_column_with_stray_strings_is_reported_without_a_contract() -> None:
    failures = stray_strings(_spoiled())
    assert [f["column"] for f in failures] == ["rate"]
    f = failures[0]
    assert f["expectation"] == "numeric_with_strays" and f["unexpected_count"] == 2
    assert set(f["sample"]) == {"22.5%", "?"} and set(f["sample_rows"]) == {7, 42}
    # Text that is all numbers (zip codes kept as strings) and real categories are left alone.
    assert stray_strings(_frame()) == []


def test_a_column_declared_as_text_is_not_second_guessed() -> None:
    assert stray_strings(_spoiled(), skip={"rate"}) == []


def test_numeric_arriving_as_strings_is_type_drift_with_only_the_offending_values() -> None:
    reference = {"rate": "float64", "region": "str"}
    failures = type_drift(_spoiled(), reference)
    assert [(f["column"], f["expectation"]) for f in failures] == [("rate", "type_drift")]
    assert set(failures[0]["sample"]) == {"22.5%", "?"}  # '5.12' parses; it is not offending
    assert "trained as numeric" in failures[0]["message"]


def test_the_reverse_text_arriving_as_numbers_is_type_drift_too() -> None:
    df = pd.DataFrame({"region": [1, 2, 3, 2]})
    failures = type_drift(df, {"region": "object"})
    assert failures[0]["column"] == "region" and failures[0]["sample"] == [1, 2, 3]
    assert type_drift(df, {"region": "int64", "absent": "float64"}) == []


def test_int_expected_on_floats_samples_the_fractional_values() -> None:
    sample, rows = offending_values(pd.Series([1.0, 2.5, 3.0, 2.5]), "int")
    assert (sample, rows) == ([2.5], [1])


def test_a_contract_dtype_failure_shows_sample_values_in_message_and_evidence() -> None:
    contract = {"name": "loans", "columns": [{"name": "rate", "dtype": "float", "min": 0}]}
    r = validate(_spoiled(), contract)
    assert not r.passed
    dtype = next(f for f in r.details["failures"] if f["expectation"] == "dtype")
    assert set(dtype["sample"]) == {"22.5%", "?"} and set(dtype["sample_rows"]) == {7, 42}
    assert "rate: dtype (e.g." in r.message and "'22.5%'" in r.message


def test_a_failed_expectation_names_its_bad_values_in_the_message() -> None:
    df = _frame().assign(region=lambda d: d["region"].where(d.index != 3, "purple"))
    r = validate(df, {"columns": [{"name": "region", "allowed": ["north", "south"]}]})
    assert not r.passed and "region: column_values_to_be_in_set (e.g. 'purple')" in r.message
    assert r.details["failures"][0]["sample"] == ["purple"]


def test_unquoted_yaml_booleans_in_an_allowed_set_are_refused_with_a_hint() -> None:
    with pytest.raises(InvalidInput, match="quote the values"):
        validate(_frame(), {"columns": [{"name": "region", "allowed": [True, False]}]})
    ok = validate(
        pd.DataFrame({"b": [True, False]}),
        {"columns": [{"name": "b", "dtype": "bool", "allowed": [True, False]}]},
    )
    assert ok.passed


# --- positive label -----------------------------------------------------------------------------


def test_yes_no_labels_score_with_a_positive_label_and_are_refused_without() -> None:
    y = np.array(["Yes", "No", "Yes", "No", "No"])
    p = np.array([0.9, 0.2, 0.7, 0.4, 0.1])
    with pytest.raises(InvalidInput, match="positive_label") as exc:
        score(y, p, "roc_auc")  # was: "roc_auc is undefined (got nan)"
    assert exc.value.field == "positive_label"
    assert score(y, p, "roc_auc", pos_label="Yes") == 1.0
    assert metric_gate(y, 1 - p, "roc_auc", min=0.5, pos_label="No").passed


# --- drift on data that lacks a model input -------------------------------------------------------


def test_a_missing_model_input_makes_the_verdict_act_whatever_the_share() -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({f"f{i}": rng.normal(size=500) for i in range(6)})
    ref = DriftReference.fit(train)
    current = train.drop(columns=["f0"])
    loose = drift_gate(ref, current)  # one of six features missing: share below 0.5
    assert loose.details["verdict"] == "warn"
    strict = drift_gate(ref, current, required=list(train.columns))
    assert strict.details["verdict"] == "act" and not strict.passed
    assert strict.details["missing_inputs"] == ["f0"] and "model inputs missing: f0" in strict.message
    assert strict.details["features"]["f0"]["status"] == "act"
