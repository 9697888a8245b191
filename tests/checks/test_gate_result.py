"""GateResult / GateReport invariants, and the package's no-Prefect rule."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import checks
from checks.result import GateReport, GateResult

CHECKS_DIR = Path(checks.__file__).parent


def _result(name: str, passed: bool, value: float | None = 0.5) -> GateResult:
    return GateResult(name=name, passed=passed, metric="m", value=value, threshold=0.4)


def test_details_are_normalised_to_plain_json() -> None:
    r = GateResult(
        name="g",
        passed=True,
        metric="m",
        details={"a": np.float64(0.25), "b": np.int64(3), "c": np.array([1.0, np.nan]), 4: np.inf},
    )
    assert r.details == {"a": 0.25, "b": 3, "c": [1.0, None], "4": None}
    assert type(r.details["b"]) is int
    again = GateResult.model_validate(json.loads(r.model_dump_json()))
    assert again == r


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_value_and_threshold_must_be_finite(bad: float) -> None:
    with pytest.raises(ValidationError):
        GateResult(name="g", passed=True, metric="m", value=bad)
    with pytest.raises(ValidationError):
        GateResult(name="g", passed=True, metric="m", threshold=bad)


def test_every_field_is_described() -> None:
    for model in (GateResult, GateReport):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_report_passes_only_when_all_pass() -> None:
    ok = GateReport(results=[_result("a", True), _result("b", True)])
    assert ok.passed and ok.failed == []
    bad = GateReport(results=[_result("a", True), _result("b", False)])
    assert not bad.passed
    assert [r.name for r in bad.failed] == ["b"]
    assert bad.get("b") is bad.results[1] and bad.get("zzz") is None


def test_empty_report_does_not_pass() -> None:
    assert GateReport(results=[]).passed is False


def test_duplicate_gate_names_refused() -> None:
    with pytest.raises(ValidationError, match="duplicate gate names"):
        GateReport(results=[_result("a", True), _result("a", False)])


def test_rows_and_markdown() -> None:
    report = GateReport(results=[_result("data", True), _result("fairness", False, value=None)])
    rows = report.as_rows()
    assert [r["gate"] for r in rows] == ["data", "fairness"]
    assert rows[1]["value"] == "—" and rows[0]["value"] == "0.5"
    md = report.to_markdown()
    assert "**Gates: FAILED** (1/2 passed)" in md
    assert "| fairness | **no** |" in md


def test_lazy_package_exports() -> None:
    assert checks.GateResult is GateResult
    with pytest.raises(AttributeError):
        _ = checks.not_a_gate  # type: ignore[attr-defined]


def test_checks_never_imports_prefect() -> None:
    for path in CHECKS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "prefect" for n in names), path.name
