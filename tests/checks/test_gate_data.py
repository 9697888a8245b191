"""Data validation gate: DataContract → GX suite; failures named per column and expectation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from checks.data import DataContract, dtype_matches, validate
from registry.errors import InvalidInput

N = 2_000
CONTRACT = {
    "name": "customers",
    "columns": {
        "id": {"dtype": "int", "unique": True, "nullable": False},
        "age": {"dtype": "int", "min": 18, "max": 100},
        "income": {"dtype": "float", "min": 0, "nullable": False},
        "segment": {"dtype": "string", "allowed": ["a", "b", "c"]},
        "score": {"dtype": "number", "min": 0, "max": 1, "mostly": 0.95},
    },
    "min_rows": 100,
    "max_rows": 1_000_000,
}


def _good() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": np.arange(N),
            "age": rng.integers(18, 90, N),
            "income": rng.gamma(2.0, 20_000, N),
            "segment": rng.choice(["a", "b", "c"], N),
            "score": rng.random(N),
        }
    )


def _failures(result) -> dict[tuple[str | None, str], dict]:
    return {(f["column"], f["expectation"]): f for f in result.details["failures"]}


def test_good_data_passes_without_progress_bars(capfd: pytest.CaptureFixture[str]) -> None:
    r = validate(_good(), CONTRACT)
    assert r.passed, r.message
    assert r.name == "data" and r.value == 0.0 and r.details["failures"] == []
    assert r.details["checks"] == 13  # 5 dtype checks + 7 value expectations + row count
    err = capfd.readouterr().err
    assert "Calculating Metrics" not in err and "%|" not in err


def test_failures_name_the_right_columns_with_counts_and_samples() -> None:
    df = _good()
    df.loc[[3, 7, 9], "age"] = 150
    df.loc[[4], "segment"] = "zzz"
    df.loc[[10], "id"] = 0  # duplicates id 0
    df.loc[[11, 12], "income"] = np.nan
    df.loc[:40, "score"] = 2.0  # 2% out of range, within mostly=0.95: not a failure
    r = validate(df, CONTRACT)
    assert not r.passed
    got = _failures(r)
    assert set(got) == {
        ("age", "column_values_to_be_between"),
        ("segment", "column_values_to_be_in_set"),
        ("id", "column_values_to_be_unique"),
        ("income", "column_values_to_not_be_null"),
    }
    age = got[("age", "column_values_to_be_between")]
    assert age["unexpected_count"] == 3 and age["sample"] == [150] and age["mostly"] == 1.0
    assert age["sample_rows"] == [3, 7, 9]
    assert got[("segment", "column_values_to_be_in_set")]["sample"] == ["zzz"]
    assert got[("id", "column_values_to_be_unique")]["unexpected_count"] == 2
    assert got[("income", "column_values_to_not_be_null")]["unexpected_count"] == 2
    assert r.value == 4.0 and r.threshold == 0.0
    assert set(r.details["failed_by_column"]) == {"age", "segment", "id", "income"}
    for col in ("age", "segment", "id", "income"):
        assert col in r.message


def test_mostly_is_honoured_both_ways() -> None:
    df = _good()
    df.loc[: int(N * 0.04), "score"] = 5.0  # ~4% bad: passes at mostly=0.95
    assert validate(df, CONTRACT).passed
    df.loc[: int(N * 0.10), "score"] = 5.0  # ~10% bad: fails
    f = _failures(validate(df, CONTRACT))[("score", "column_values_to_be_between")]
    assert f["mostly"] == 0.95 and f["unexpected_percent"] == pytest.approx(10.05, abs=0.1)


def test_missing_column_and_wrong_dtype_fail_with_clear_messages() -> None:
    df = _good().drop(columns=["segment"])
    df["age"] = df["age"].astype(float)
    r = validate(df, CONTRACT)
    assert not r.passed
    got = _failures(r)
    assert got[("segment", "column_exists")]["message"] == "column 'segment' is missing"
    dtype = got[("age", "dtype")]
    assert dtype["observed"] == "float64" and dtype["expected"] == "int"
    # Value rules of a column that failed its schema are skipped, not run against bad data.
    assert r.details["skipped_columns"] == ["age", "segment"]
    assert ("age", "column_values_to_be_between") not in got


def test_optional_missing_column_and_extra_columns() -> None:
    contract = {**CONTRACT, "columns": {**CONTRACT["columns"], "note": {"required": False}}}
    assert validate(_good(), contract).passed
    strict = {**CONTRACT, "extra_columns": "forbid"}
    r = validate(_good().assign(secret=1), strict)
    assert not r.passed
    assert _failures(r)[(None, "no_extra_columns")]["observed"] == ["secret"]


def test_empty_frame_and_row_bounds_fail() -> None:
    empty = validate(_good().iloc[:0], CONTRACT)
    assert not empty.passed
    f = _failures(empty)[(None, "table_row_count_to_be_between")]
    assert f["observed"] == 0
    assert validate(_good().iloc[:50], CONTRACT).passed is False
    # An empty frame fails by default even when the contract says nothing about rows.
    bare = {"columns": [{"name": "id"}]}
    assert validate(pd.DataFrame({"id": []}), bare).passed is False
    assert validate(pd.DataFrame({"id": []}), {**bare, "min_rows": 0}).passed is True


def test_gx_evaluation_errors_are_failures_not_exceptions() -> None:
    # No dtype declared, so the range rule reaches GX, which cannot compare strings to 0.
    df = pd.DataFrame({"x": ["a", "b", "c"]})
    r = validate(df, {"columns": {"x": {"min": 0}}})
    assert not r.passed
    assert "GX could not evaluate" in r.details["failures"][0]["message"]


def test_contract_loads_from_list_or_mapping() -> None:
    from_map = DataContract.model_validate(CONTRACT)
    as_list = {**CONTRACT, "columns": [{"name": k, **v} for k, v in CONTRACT["columns"].items()]}
    assert DataContract.model_validate(as_list) == from_map
    assert DataContract.model_validate(from_map.model_dump(mode="json")) == from_map
    types = [e.expectation_type for e in from_map.expectation_suite().expectations]
    assert types.count("expect_column_values_to_be_between") == 3
    assert "expect_table_row_count_to_be_between" in types


@pytest.mark.parametrize(
    "columns",
    [
        {"x": {"min": 5, "max": 1}},
        {"x": {"dtype": "strnig"}},
        {"x": {"dtype": "string", "min": 0}},
        {"x": {"mostly": 0}},
        [{"name": "x"}, {"name": "x"}],
    ],
)
def test_invalid_contracts_are_refused(columns) -> None:
    with pytest.raises(ValidationError):
        DataContract.model_validate({"columns": columns})
    with pytest.raises(InvalidInput) as err:
        validate(pd.DataFrame({"x": [1]}), {"columns": columns})
    assert err.value.field == "contract"


def test_non_dataframe_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        validate([{"id": 1}], CONTRACT)  # type: ignore[arg-type]
    assert err.value.field == "df"


@pytest.mark.parametrize(
    ("series", "kind", "expected"),
    [
        (pd.Series([1, 2]), "int", True),
        (pd.Series([1, 2]), "float", False),
        (pd.Series([1.5]), "number", True),
        (pd.Series([True]), "int", False),
        (pd.Series([True]), "bool", True),
        (pd.Series(["a"]), "string", True),
        (pd.Series(["a"], dtype="category"), "string", False),
        (pd.Series(["a"], dtype="category"), "category", True),
        (pd.Series(pd.to_datetime(["2026-01-01"])), "datetime", True),
        (pd.Series([1, None], dtype="Int64"), "int", True),
        (pd.Series([1, 2]), "int64", True),
        (pd.Series([1, 2]), "int32", False),
    ],
)
def test_dtype_kinds(series: pd.Series, kind: str, expected: bool) -> None:
    assert dtype_matches(series.dtype, kind) is expected
