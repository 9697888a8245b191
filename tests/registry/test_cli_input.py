"""The command line in this process: bad input is one line and exit 2 with nothing written, and
what the commands print says enough (params, input schema, the registry read, how to resume)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import Policy, Registry, waiting
from tests.reliability.cli import CliResult, run_cli

MODEL = "credit-risk"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A shell whose GOVFLOW_* settings name a fresh SQLite registry; alice is acting."""
    monkeypatch.setenv("GOVFLOW_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("GOVFLOW_ARTIFACT_ROOT", str(tmp_path / "art"))
    monkeypatch.setenv("GOVFLOW_ACTOR", "alice")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    (tmp_path / "m.bin").write_bytes(b"weights")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # the in-process CLI reads Prefect's settings, which the session's test server may have set
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield tmp_path


def _refused(*args: str) -> str:
    """Run a command that must be refused; return its one stderr line."""
    result = run_cli(*args)
    assert result.code == 2, (args, result)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err and result.out == ""
    return lines[0]


def _ok(*args: str) -> CliResult:
    result = run_cli(*args)
    assert result.code == 0, (args, result)
    return result


def _versions(home: Path) -> int:
    db = home / "registry.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM versions").fetchone()[0]


def _blobs(home: Path) -> list[Path]:
    return [p for p in (home / "art").rglob("*") if p.is_file()] if (home / "art").exists() else []


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines at the terminal width


# --- register ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [65, 100, 4000])
def test_a_commit_longer_than_64_characters_is_one_line_and_writes_nothing(home: Path, length: int) -> None:
    line = _refused("register", MODEL, "--artifact", str(home / "m.bin"), "--commit", "a" * length)
    assert line == f"error: --commit: {length} characters; a commit id has at most 64"
    assert _versions(home) == 0 and _blobs(home) == []


def test_a_64_character_commit_is_registered(home: Path) -> None:
    _ok("register", MODEL, "--artifact", str(home / "m.bin"), "--commit", "b" * 64)
    shown = json.loads(_ok("show", f"{MODEL}/1", "--json").out)
    assert shown["lineage"]["code"]["commit"] == "b" * 64


@pytest.mark.parametrize("text", ["abc", "0.5x", "nan", "inf", "-Infinity", "1e999", "1_0", "١", "", "0x10"])
def test_a_metric_that_is_not_a_finite_decimal_number_is_one_line_naming_it(home: Path, text: str) -> None:
    line = _refused("register", MODEL, "--artifact", str(home / "m.bin"), "--metric", f"auc={text}")
    assert line.startswith("error: --metric auc: "), line
    assert _versions(home) == 0


def test_metrics_on_the_command_line_are_stored_as_numbers(home: Path) -> None:
    args = ["--metric", "auc=0.91", "--metric", "n=3", "--metric", "loss=-1.5e-3", "--metric", "x=.5"]
    _ok("register", MODEL, "--artifact", str(home / "m.bin"), *args)
    metrics = json.loads(_ok("show", f"{MODEL}/1", "--json").out)["metrics"]
    assert metrics == {"auc": 0.91, "n": 3.0, "loss": -0.0015, "x": 0.5}


# --- show ------------------------------------------------------------------------------------


def test_show_prints_params_tags_and_a_short_input_schema(home: Path) -> None:
    columns = [{"name": f"f{i}", "dtype": "float64"} for i in range(10)] + [{"name": "region", "dtype": "object"}]
    (home / "schema.json").write_text(json.dumps(columns))
    _ok(
        "register", MODEL, "--artifact", str(home / "m.bin"), "--param", "C=1.0", "--param", "solver=lbfgs",
        "--param", "fit_intercept=true", "--tag", "team=risk", "--input-schema", str(home / "schema.json"),
    )  # fmt: skip
    out = _flat(_ok("show", f"{MODEL}/1").out)
    assert 'params C=1.0, fit_intercept=true, solver="lbfgs"' in out, out
    assert "tags team=risk" in out, out
    shown = ", ".join(f"f{i}:float64" for i in range(8))
    assert f"input 11 columns: {shown}, … 3 more (--json lists all)" in out, out


def test_show_says_when_a_version_has_no_input_schema(home: Path) -> None:
    _ok("register", MODEL, "--artifact", str(home / "m.bin"))
    assert "input no input schema" in _flat(_ok("show", f"{MODEL}/1").out)


# --- production-at now -----------------------------------------------------------------------


def test_production_at_now_names_the_live_version(home: Path) -> None:
    _ok("register", MODEL, "--artifact", str(home / "m.bin"))
    assert "no version was in production" in _ok("production-at", MODEL, "now").out
    _ok("transition", MODEL, "1", "staging")
    _ok("approve", MODEL, "1", "--actor", "bob", "--reason", "ok")
    _ok("transition", MODEL, "1", "production")
    for word in ("now", "NOW", " now "):
        answer = json.loads(_ok("production-at", MODEL, word, "--json").out)
        assert (answer["version"], answer["approved_by"]) == (1, ["bob"]), answer
    assert f"{MODEL}/1 was in production at" in _ok("production-at", MODEL, "now").out
    assert "(or now)" in _refused("production-at", MODEL, "yesterday")


# --- a model name typo -----------------------------------------------------------------------


def test_a_model_name_typo_suggests_the_nearest_name_and_names_the_database(home: Path) -> None:
    _ok("register", MODEL, "--artifact", str(home / "m.bin"))
    where = str((home / "registry.db").resolve())
    for args in (("show", "credit-risks/1"), ("versions", "credit-rsk"), ("approve", "credit_risk", "1")):
        line = _refused(*args)
        assert "did you mean 'credit-risk'?" in line and line.endswith(f"(registry: {where})"), line
    line = _refused("show", "fraud/1")
    assert "did you mean" not in line and where in line


# --- an approval while a run waits, with no Prefect API ----------------------------------------


def _waiting(home: Path, orchestrator: str) -> None:
    reg = Registry(url=f"sqlite:///{home / 'registry.db'}", artifact_root=str(home / "art"), policy=Policy())
    try:
        v = reg.register(MODEL, home / "m.bin", actor="ml-pipeline")
        reg.transition(MODEL, 1, "staging", actor="ml-pipeline")
        waiting.mark_waiting(reg, v, run_id="run-42", timeout=86_400, orchestrator=orchestrator, actor="ml-pipeline")
    finally:
        reg.close()


def test_an_approval_without_prefect_says_reconcile_with_the_api_resumes_the_run_now(home: Path) -> None:
    _waiting(home, "prefect")
    result = _ok("approve", MODEL, "1", "--reason", "ok")
    warning = _flat(result.err)
    assert "run run-42 waits for a decision on credit-risk/1" in warning, warning
    assert (
        "To resume the run now: `PREFECT_API_URL=<the run's Prefect API> govflow reconcile credit-risk`"
        in warning
    ), warning
    assert "settles the version after" in warning


def test_an_approval_for_an_airflow_wait_does_not_ask_for_prefect(home: Path) -> None:
    _waiting(home, "airflow")
    warning = _flat(_ok("approve", MODEL, "1", "--reason", "ok").err)
    assert "airflow run run-42 waits" in warning and "PREFECT_API_URL" not in warning, warning
