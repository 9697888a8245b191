"""`govflow run` in subprocesses: exit codes by outcome, one-line refusals, quiet Prefect."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from govflow.cli.flows import STARTUP_ENV, STARTUP_SETTING, quiet_prefect
from tests.fixtures.prefect import wait_for
from tests.flows.conftest import with_config

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("TELEMETRY_SESSION", "EventsWorker", "Traceback", "database is locked", "Task run")


def govflow(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "govflow", *args],
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def temporary_server_env(home: Path) -> dict[str, str]:
    """A user's shell: no Prefect API (a temporary server per run), no Prefect settings at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)
    return env


def one_line_refusal(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


# --- outcomes ---------------------------------------------------------------------------------


def test_gates_failed_exits_3_quietly_on_a_temporary_server(pipeline, tmp_path: Path) -> None:
    config = with_config(pipeline.base, gates={"metrics": {"roc_auc": {"min": 0.999}}, "fairness": {"max_dp_diff": 0.5}})
    proc = govflow(
        "run", "retrain", "--config", str(config), "--json", env=temporary_server_env(tmp_path / "ph")
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    body = json.loads(proc.stdout)
    assert (body["state"], body["outcome"], body["gates_passed"]) == ("GatesFailed", "gates-failed", False)
    for noise in NOISE:
        assert noise not in proc.stderr, (noise, proc.stderr)
    # Prefect's own INFO lines are gone; the flow's own lines still show.
    assert "Starting temporary server" not in proc.stderr
    # Instead, one line says where another terminal reaches this run's server (to approve).
    assert re.search(r"temporary Prefect server for this run: http://127\.0\.0\.1:\d+/api", proc.stderr)
    assert "retrain credit-risk/1: gates-failed" in proc.stderr


def test_approved_from_the_terminal_exits_0_then_monitor_act_4_and_ok_0(pipeline) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "govflow", "run", "retrain", "--config", str(pipeline.base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        # What the run prints while it waits: the exact command to approve it.
        hint = "Approve with: govflow approve credit-risk 1 --actor YOUR-NAME --reason TEXT"
        wait_for(lambda: any(hint in line for line in lines), timeout=180, what="the approve command")
        approve = govflow(
            "approve", "credit-risk", "1", "--reason", "card reviewed", "--actor", "risk-officer"
        )
        assert approve.returncode == 0, approve.stderr
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    assert proc.returncode == 0, out + "".join(lines)
    assert out.splitlines()[0] == "state: Promoted" and "outcome: promoted" in out
    assert not any(noise in "".join(lines) for noise in NOISE), lines
    # The config lives in a temporary folder, outside the repository: the commit is still the code's.
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    reg = pipeline.registry()
    assert reg.get_version("credit-risk", 1).lineage.code.commit == head.stdout.strip()
    reg.close()

    act = govflow("run", "monitor", "--config", str(pipeline.base), "--data", str(pipeline.drifted), "--json")
    assert act.returncode == 4, act.stdout + act.stderr
    assert json.loads(act.stdout)["state"] == "DriftAct"
    ok = govflow("run", "monitor", "--config", str(pipeline.base), "--data", str(pipeline.stable), "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["state"] in ("DriftOk", "DriftWarn")
    # Without --data the config's monitor.source is read.
    sourced = with_config(pipeline.base, monitor={"source": str(pipeline.drifted)})
    from_source = govflow("run", "monitor", "--config", str(sourced))
    assert from_source.returncode == 4, from_source.stdout + from_source.stderr
    assert "state: DriftAct" in from_source.stdout


def test_monitor_before_any_production_version_exits_0(pipeline) -> None:
    proc = govflow("run", "monitor", "--config", str(pipeline.base), "--data", str(pipeline.stable))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "state: NoProduction" in proc.stdout


def test_manual_rollback_with_nothing_live_is_refused_in_one_line(pipeline) -> None:
    one_line_refusal(govflow("run", "rollback", "credit-risk", "--reason", "test"), "credit-risk")


# --- refusals -----------------------------------------------------------------------------------


def test_a_missing_training_file_is_one_line_exit_2(pipeline, tmp_path: Path) -> None:
    missing = tmp_path / "gone.csv"
    config = with_config(pipeline.base, data={"train": str(missing), "eval": str(pipeline.stable)})
    one_line_refusal(govflow("run", "retrain", "--config", str(config)), "data.train", str(missing))


def test_a_missing_monitor_file_is_one_line_exit_2(pipeline, tmp_path: Path) -> None:
    missing = tmp_path / "new.csv"
    one_line_refusal(
        govflow("run", "monitor", "--config", str(pipeline.base), "--data", str(missing)), "--data"
    )


def test_a_refusal_inside_the_flow_is_one_error_line_and_no_traceback(pipeline, tmp_path: Path) -> None:
    # The file exists, so only the flow finds out: its Yes/No target has no positive_label.
    bad = tmp_path / "bad.csv"
    bad.write_text("a,sex,default\n1,f,No\n3,m,Yes\n")
    config = with_config(pipeline.base, data={"train": str(bad), "eval": str(bad)})
    proc = govflow("run", "retrain", "--config", str(config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Finished in state" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert proc.stdout == ""


def test_a_missing_config_and_a_bad_one_are_refused(pipeline, tmp_path: Path) -> None:
    one_line_refusal(govflow("run", "retrain", "--config", str(tmp_path / "none.yaml")), "--config")
    bad = with_config(pipeline.base, approval_timeout="soon")
    one_line_refusal(govflow("run", "retrain", "--config", str(bad)), "approval_timeout")


def test_monitor_without_data_or_source_is_refused(pipeline) -> None:
    config = with_config(pipeline.base, monitor={})
    one_line_refusal(govflow("run", "monitor", "--config", str(config)), "--data", "monitor.source")


def test_a_temporary_server_that_does_not_start_is_one_line_naming_the_setting(
    pipeline, tmp_path: Path
) -> None:
    config = with_config(pipeline.base, gates={"metrics": {"roc_auc": {"min": 0.999}}, "fairness": {"max_dp_diff": 0.5}})
    env = dict(temporary_server_env(tmp_path / "ph"), **{STARTUP_ENV: "1"})
    one_line_refusal(
        govflow("run", "retrain", "--config", str(config), env=env), STARTUP_SETTING, STARTUP_ENV
    )


@pytest.mark.parametrize(
    ("name", "value"), [(STARTUP_ENV, "2m"), (STARTUP_SETTING, "-5"), (STARTUP_ENV, "0")]
)
def test_a_startup_timeout_that_is_not_whole_seconds_is_refused(pipeline, name: str, value: str) -> None:
    env = dict(os.environ, **{name: value})
    one_line_refusal(govflow("run", "retrain", "--config", str(pipeline.base), env=env), name)


# --- quiet settings (no Prefect import needed) ---------------------------------------------------


def test_quiet_defaults_fill_only_what_the_user_left_unset(tmp_path: Path) -> None:
    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_LOGGING_LEVEL": "DEBUG", STARTUP_ENV: "300"}
    quiet_prefect(env)
    assert env["PREFECT_LOGGING_LEVEL"] == "DEBUG"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL"] == "INFO"
    assert env[STARTUP_SETTING] == "300"
    plain = {"PREFECT_HOME": str(tmp_path)}
    quiet_prefect(plain)
    assert plain[STARTUP_SETTING] == "120"
    mine = {"PREFECT_HOME": str(tmp_path), STARTUP_SETTING: "45", STARTUP_ENV: "300"}
    quiet_prefect(mine)
    assert mine[STARTUP_SETTING] == "45"  # Prefect's own name wins: it is what Prefect reads


def test_quiet_defaults_respect_the_active_prefect_profile(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_SERVER_ANALYTICS_ENABLED = "true"\n'
        'PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS = "600"\n'
    )
    env = {"PREFECT_HOME": str(tmp_path)}
    quiet_prefect(env)
    assert "PREFECT_SERVER_ANALYTICS_ENABLED" not in env and STARTUP_SETTING not in env
    assert env["PREFECT_LOGGING_LEVEL"] == "WARNING"


def test_the_events_worker_logger_is_quiet_below_error() -> None:
    # Prefect's EventsWorker logs "Still processing items" at exit on a logger named after the class.
    import logging

    from prefect.events.worker import EventsWorker

    assert logging.getLogger(EventsWorker.__name__).getEffectiveLevel() == logging.ERROR
