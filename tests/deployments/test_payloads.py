"""Payload validation: unit checks of the validator, and 422s naming the fields over real HTTP."""

from __future__ import annotations

import json
import logging

import httpx
import numpy as np
import pytest

from deployments.payload import InputValidator, column_kind
from registry import ColumnSpec
from registry.errors import InvalidInput
from tests.deployments.support import MODEL, probe_records, promote, register, wait_for

SCHEMA = [
    ColumnSpec(name="age", dtype="int64"),
    ColumnSpec(name="income", dtype="float64"),
    ColumnSpec(name="plan", dtype="str"),
    ColumnSpec(name="active", dtype="bool"),
]
GOOD = {"age": 30, "income": 51.5, "plan": "pro", "active": True}


def _problems(records: object) -> dict[tuple[str, str], dict]:
    with pytest.raises(InvalidInput) as info:
        InputValidator(SCHEMA).to_frame(records)
    return {(p.problem, p.column): p.model_dump() for p in info.value.fields.get("problems", [])}


def test_valid_records_become_the_schema_frame() -> None:
    frame = InputValidator(SCHEMA).to_frame([GOOD, {**GOOD, "age": 41.0, "income": 7, "plan": None}])
    assert list(frame.columns) == ["age", "income", "plan", "active"]
    assert frame["age"].dtype == np.int64 and frame["age"].tolist() == [30, 41]
    assert frame["income"].dtype == np.float64 and frame["income"].tolist() == [51.5, 7.0]
    assert frame["active"].dtype == bool
    assert frame["plan"].isna().tolist() == [False, True]


def test_model_feature_order_wins() -> None:
    order = ["plan", "active", "age", "income"]
    assert list(InputValidator(SCHEMA, order=order).to_frame([GOOD]).columns) == order
    with pytest.raises(InvalidInput, match="model-only \\['extra'\\]"):
        InputValidator(SCHEMA, order=[*order, "extra"])


def test_unknown_missing_and_wrong_types_are_all_named() -> None:
    records = [
        GOOD,
        {"age": "30", "income": 1.0, "plan": "pro", "active": True, "colour": "red"},
        {"age": True, "income": "high", "plan": 3, "active": 1},
        {"age": 2.5, "plan": "pro", "active": None},
    ]
    problems = _problems(records)
    assert set(problems) == {
        ("unknown", "colour"),
        ("missing", "income"),
        ("type", "age"),
        ("type", "income"),
        ("type", "plan"),
        ("type", "active"),
    }
    assert problems[("type", "age")]["rows"] == [1, 2, 3]
    assert problems[("type", "age")]["got"] == ["boolean", "number", "string"]
    assert problems[("missing", "income")]["rows"] == [3]
    assert problems[("type", "active")]["got"] == ["integer", "null"]


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        ("int64", 3),
        ("int8", 3),
        ("uint16", 3),
        ("float64", 1.5),
        ("float32", 1.5),
        ("Int64", 3),
        ("Float64", 1.5),
        ("bool", True),
        ("boolean", True),
        ("str", "x"),
        ("category", "x"),
        ("datetime64[ns]", "2026-01-02T03:04:05"),
    ],
)
def test_a_missing_column_of_any_dtype_is_named_not_converted(dtype: str, value: object) -> None:
    """The column is checked against the schema before any dtype conversion is tried."""
    schema = [ColumnSpec(name="x", dtype=dtype), ColumnSpec(name="age", dtype="int64")]
    records = [{"x": value, "age": 1}, {"age": 2}, {"age": 3, "colour": "red"}]
    with pytest.raises(InvalidInput) as info:
        InputValidator(schema).to_frame(records, field="dataframe_records")
    assert str(info.value) == "dataframe_records: unknown columns: colour; missing columns: x"
    assert [(p.problem, p.column, p.rows) for p in info.value.fields["problems"]] == [
        ("missing", "x", [1, 2]),
        ("unknown", "colour", [2]),
    ]


def test_structure_refusals() -> None:
    for bad in ([], {}, "x", None, [1, 2]):
        with pytest.raises(InvalidInput, match="records"):
            InputValidator(SCHEMA).to_frame(bad)
    with pytest.raises(InvalidInput, match="at most 2"):
        InputValidator(SCHEMA).to_frame([GOOD] * 3, max_rows=2)


def test_dtype_kinds() -> None:
    assert column_kind("Int64") == ("int", True)
    assert column_kind("int32") == ("int", False)
    assert column_kind("boolean") == ("bool", True)
    assert column_kind("category") == ("string", True)
    assert column_kind("datetime64[ns, UTC]") == ("datetime", True)
    with pytest.raises(InvalidInput, match="complex128"):
        column_kind("complex128")


def test_datetime_columns_parse_iso_strings() -> None:
    v = InputValidator([ColumnSpec(name="at", dtype="datetime64[ns, UTC]")])
    frame = v.to_frame([{"at": "2026-01-02T03:04:05Z"}, {"at": None}])
    assert str(frame["at"].dtype) == "datetime64[ns, UTC]"
    with pytest.raises(InvalidInput) as info:
        v.to_frame([{"at": "2026-01-02"}, {"at": "yesterday"}])
    (problem,) = info.value.fields["problems"]
    assert problem.column == "at" and problem.rows == [1]


def test_http_422_names_fields_and_requests_are_logged(
    sqlite_registry, estimators, serve_app, caplog
) -> None:
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    srv = serve_app(reg, poll=0)
    caplog.set_level(logging.INFO, logger="govflow.serving")
    with httpx.Client(base_url=srv.url, timeout=5) as client:
        r = client.post("/predict", json={"records": [{**GOOD, "colour": "red", "age": "old"}]})
        assert r.status_code == 422
        body = r.json()
        assert "colour" in body["detail"] and "age" in body["detail"]
        assert {(p["problem"], p["column"]) for p in body["problems"]} == {
            ("unknown", "colour"),
            ("type", "age"),
        }

        r = client.post("/predict", json=[{k: v for k, v in GOOD.items() if k != "plan"}])
        assert r.status_code == 422 and r.json()["problems"][0] == {
            "column": "plan",
            "problem": "missing",
            "expected": "str",
            "got": [],
            "rows": [0],
            "count": 1,
        }

        assert client.post("/predict", content=b"{not json").status_code == 422
        r = client.post("/predict", json={"records": [GOOD], "extra": 1})
        assert r.status_code == 422 and "extra" in r.json()["detail"]
        # null is a legal float64 value, but this pipeline has no imputer: the model refuses it.
        r = client.post("/predict", json=[{**GOOD, "income": None}])
        assert r.status_code == 422 and "model refused" in r.json()["detail"]
        ok = client.post("/predict", json=probe_records(2))
        assert ok.status_code == 200 and ok.json()["version"] == v1 and len(ok.json()["predictions"]) == 2

    def predict_lines() -> list[dict]:
        lines = [
            json.loads(r.getMessage()) for r in list(caplog.records) if r.name == "govflow.serving.requests"
        ]
        return [line for line in lines if line["path"] == "/predict"]

    # The line is written once the response has been sent, so the last one may trail the client.
    predicts = wait_for(lambda: len(p := predict_lines()) >= 6 and p, timeout=5, what="six request lines")
    assert [line["status"] for line in predicts] == [422, 422, 422, 422, 422, 200]
    assert all(line["version"] == v1 and line["latency_ms"] >= 0 for line in predicts)
    assert all(line["model"] == MODEL and line["method"] == "POST" for line in predicts)


def test_oversized_body_is_refused(sqlite_registry, estimators, serve_app) -> None:
    reg = sqlite_registry
    promote(reg, register(reg, estimators[0]))
    srv = serve_app(reg, poll=0, max_body_bytes=1000, max_rows=3)
    with httpx.Client(base_url=srv.url, timeout=5) as client:
        assert client.post("/predict", json={"records": [GOOD] * 50}).status_code == 413
        r = client.post("/predict", json={"records": [GOOD] * 4})
        assert r.status_code == 422 and "at most 3" in r.json()["detail"]
