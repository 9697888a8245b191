"""`govflow config check` and config-load refusals: fairness pairs, limits, YAML booleans."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.config import PipelineConfig
from flows.demo_data import make_period
from registry.errors import InvalidInput

BASE = {"model_name": "churn", "target": "default", "data": {"path": "all.csv"}}


def govflow(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "GOVFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "govflow", *args], env=env, capture_output=True, text=True, timeout=120
    )


def one_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    frame = make_period(400, 1)
    frame.to_csv(tmp_path / "all.csv", index=False)
    return tmp_path


def write(folder: Path, text: str, name: str = "c.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_good_config_exits_0_with_a_summary_and_writes_nothing(folder: Path) -> None:
    cfg = {
        **BASE,
        "sensitive_features": ["sex"],
        "gates": {"fairness": {"max_dp_diff": 0.2, "max_eo_diff": None}},
        "contract": {"columns": [{"name": "age", "dtype": "int", "min": 18}]},
    }
    path = write(folder, yaml.safe_dump(cfg))
    before = sorted(p.name for p in folder.iterdir())
    proc = govflow("config", "check", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"config ok: {path}") and "positive_label: 1" in proc.stdout
    assert "gates: roc_auc, fairness, champion" in proc.stdout
    assert sorted(p.name for p in folder.iterdir()) == before  # no registry, no artifacts


def test_unquoted_yes_no_is_refused_with_a_quoting_hint(folder: Path) -> None:
    frame = pd.read_csv(folder / "all.csv")
    frame.assign(default=frame["default"].map({1: "Yes", 0: "No"})).to_csv(folder / "all.csv", index=False)
    text = "model_name: churn\ntarget: default\ndata: {path: all.csv}\npositive_label: Yes\n"
    one_line(govflow("config", "check", str(write(folder, text))), "positive_label", "quote it")
    # Quoted, it works; left out, a Yes/No target is refused naming the setting.
    assert govflow("config", "check", str(write(folder, text.replace("Yes", "'Yes'")))).returncode == 0
    bare = write(folder, text.replace("positive_label: Yes\n", ""), "bare.yaml")
    one_line(govflow("config", "check", str(bare)), "positive_label", "'No', 'Yes'")


def test_bad_data_is_one_line_naming_what_failed(folder: Path) -> None:
    missing = write(folder, yaml.safe_dump({**BASE, "data": {"path": "nope.csv"}}), "missing.yaml")
    one_line(govflow("config", "check", str(missing)), "data.path", "not a readable file")
    (folder / "header.csv").write_text("age,income,default\n")
    header = write(folder, yaml.safe_dump({**BASE, "data": {"path": "header.csv"}}), "header.yaml")
    one_line(govflow("config", "check", str(header)), "data gate would fail", "rows")
    frame = pd.read_csv(folder / "all.csv")
    frame.loc[::50, "sex"] = None
    frame.to_csv(folder / "holes.csv", index=False)
    holes = {**BASE, "data": {"path": "holes.csv"}, "sensitive_features": ["sex"]}
    holes["gates"] = {"fairness": {"max_eo_diff": 0.2}}
    line = one_line(govflow("config", "check", str(write(folder, yaml.safe_dump(holes), "holes.yaml"))))
    assert "sex: complete" in line


# --- config load (in process) -----------------------------------------------------------------


def _refused(field: str, **changes) -> str:
    with pytest.raises(InvalidInput) as exc:
        PipelineConfig.parse({**BASE, **changes})
    assert exc.value.field == field and "\n" not in str(exc.value)
    return str(exc.value)


def test_fairness_needs_sensitive_features_and_the_reverse() -> None:
    assert "add gates.fairness" in _refused("gates", sensitive_features=["sex"])
    assert "needs sensitive_features" in _refused("gates", gates={"fairness": {"max_dp_diff": 0.1}})


def test_a_fairness_limit_can_be_switched_off_but_not_both() -> None:
    msg = _refused("gates.fairness", sensitive_features=["sex"], gates={"fairness": {"min_group_size": 30}})
    assert "needs max_dp_diff, max_eo_diff or both" in msg
    both_null = {"fairness": {"max_dp_diff": None, "max_eo_diff": None}}
    _refused("gates.fairness", sensitive_features=["sex"], gates=both_null)
    one = PipelineConfig.parse(
        {**BASE, "sensitive_features": ["sex"], "gates": {"fairness": {"max_dp_diff": 0.1}}}
    )
    assert (one.gates.fairness.max_dp_diff, one.gates.fairness.max_eo_diff) == (0.1, None)  # no silent 0.1


def test_yaml_booleans_where_text_belongs_are_refused(tmp_path: Path) -> None:
    allowed = "contract: {columns: [{name: churn, allowed: [Yes, No]}]}\n"
    path = write(tmp_path, "model_name: m\ntarget: churn\ndata: {path: d.csv}\n" + allowed)
    with pytest.raises(InvalidInput, match="quote the values"):
        PipelineConfig.load(path)
    for field, value in (("target", True), ("features", ["age", False]), ("positive_label", False)):
        assert "quote it" in _refused(field if field != "features" else "features.1", **{field: value})
    assert "regression" in _refused("positive_label", task="regression", positive_label="high")
