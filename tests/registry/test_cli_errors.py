"""Edge input on the CLI: every refusal is one ``error:`` line on stderr, exit 2, nothing written."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from registry.datasets import hash_file
from registry.errors import InvalidInput, PolicyError
from registry.policy import Policy


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A SQLite registry with one model, ``good``, at version 1."""
    (tmp_path / "m.bin").write_bytes(b"weights")
    _run(tmp_path, "register", "good", "--artifact", str(tmp_path / "m.bin"))
    return tmp_path


def _run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "GOVFLOW_REGISTRY_URL": f"sqlite:///{home / 'registry.db'}",
        "GOVFLOW_ARTIFACT_ROOT": str(home / "art"),
        "GOVFLOW_ACTOR": "alice",
        "COLUMNS": "200",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "govflow", *args], env=full_env, capture_output=True, text=True, timeout=60
    )


def _refused(home: Path, *args: str, **env: str) -> str:
    """Run a command that must be refused; return its one stderr line."""
    proc = _run(home, *args, **env)
    assert proc.returncode == 2, (args, proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "╭" not in proc.stderr
    assert proc.stdout == ""
    return lines[0]


def _event_count(home: Path) -> int:
    with sqlite3.connect(home / "registry.db") as conn:
        return conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]


# --- production-at times outside the UTC range ----------------------------------------------


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59-00:01"]
)
def test_production_at_time_out_of_range(home: Path, when: str) -> None:
    line = _refused(home, "production-at", "good", when)
    assert "time" in line and when in line


def test_production_at_edges_of_range_still_answer(home: Path) -> None:
    for when in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00-05:00"):
        proc = _run(home, "production-at", "good", when)
        assert proc.returncode == 0, proc.stderr
        assert "no version was in production" in proc.stdout


# --- datasets that are not regular, readable files ------------------------------------------


def _special_paths(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    return {"mem": Path("/proc/self/mem"), "fifo": fifo, "dir": folder, "device": Path("/dev/zero")}


@pytest.mark.parametrize("kind", ["mem", "fifo", "dir", "device"])
def test_register_refuses_dataset_that_is_not_a_readable_file(home: Path, kind: str) -> None:
    target = _special_paths(home)[kind]
    before = _event_count(home)
    line = _refused(
        home, "register", "good", "--artifact", str(home / "m.bin"), "--dataset", f"train={target}"
    )
    assert "dataset" in line and str(target) in line
    assert _event_count(home) == before
    assert '"version": 1' in _run(home, "show", "good/1", "--json").stdout
    assert "good/2 not found" in _refused(home, "show", "good/2")


def test_names_too_long_for_the_file_system_are_refused(home: Path) -> None:
    long = str(home / ("a" * 5000))
    assert "dataset" in _refused(
        home, "register", "good", "--artifact", str(home / "m.bin"), "--dataset", f"train={long}"
    )
    assert "--artifact" in _refused(home, "register", "good", "--artifact", long)
    assert "dataset" in _refused(home, "impact", "--dataset", long)
    assert "policy" in _refused(home, "models", GOVFLOW_POLICY=long)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_register_refuses_unreadable_dataset(home: Path) -> None:
    data = home / "secret.csv"
    data.write_text("a\n1\n")
    data.chmod(0)
    line = _refused(home, "register", "good", "--artifact", str(home / "m.bin"), "--dataset", f"train={data}")
    assert "dataset" in line and str(data) in line


def test_hash_file_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = _special_paths(tmp_path)["fifo"]
    outcome: list[BaseException | object] = []

    def work() -> None:
        try:
            outcome.append(hash_file(fifo))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(0.05)
    if worker.is_alive():
        # Release the blocked open so the thread ends, then fail.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
        pytest.fail("hash_file blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], InvalidInput)
    assert outcome[0].field == "dataset" and str(fifo) in str(outcome[0])


# --- policy files that are not UTF-8 -------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "body"), [(".toml", b"approvals = 1 # caf\xe9\n"), (".yaml", b"a: caf\xe9\n")]
)
def test_policy_not_utf8_is_a_policy_error(tmp_path: Path, suffix: str, body: bytes) -> None:
    path = tmp_path / f"policy{suffix}"
    path.write_bytes(body)
    with pytest.raises(PolicyError, match="not UTF-8") as info:
        Policy.load(path)
    assert str(path) in str(info.value) and info.value.field == "policy"


def test_policy_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = _special_paths(tmp_path)["fifo"]
    with pytest.raises(PolicyError, match="not a regular file"):
        Policy.load(fifo)


def test_cli_policy_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"approvals = 1 # caf\xe9\n")
    line = _refused(tmp_path, "models", GOVFLOW_POLICY=str(path))
    assert str(path) in line and "UTF-8" in line


# --- usage errors: one line, not a box ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["show"], "'ref'"),
        (["register", "good"], "'--artifact'"),
        (["audit", "log", "--limit", "abc"], "'--limit'"),
        (["frobnicate"], "'frobnicate'"),
        (["approve", "good", "notanint"], "'version'"),
        (["versions", "good", "--bogus"], "--bogus"),
    ],
    ids=[
        "missing-argument",
        "missing-option",
        "bad-option-value",
        "unknown-command",
        "bad-int",
        "unknown-option",
    ],
)
def test_usage_errors_are_one_line(home: Path, args: list[str], names: str) -> None:
    before = _event_count(home)
    line = _refused(home, *args)
    assert names in line
    assert _event_count(home) == before


def test_help_still_exits_zero(home: Path) -> None:
    for args in (["--help"], ["audit", "--help"], ["register", "--help"]):
        proc = _run(home, *args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Usage:" in proc.stdout and proc.stderr == ""


def test_no_arguments_prints_help(home: Path) -> None:
    proc = _run(home)
    assert proc.returncode == 2
    assert "Usage:" in proc.stdout and "register" in proc.stdout
    assert "error" not in proc.stderr


def test_command_exit_codes_are_kept(home: Path) -> None:
    assert _run(home, "audit", "verify").returncode == 0
    with sqlite3.connect(home / "registry.db") as conn:
        conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1")
    proc = _run(home, "audit", "verify")
    assert proc.returncode == 1 and "BROKEN at seq 1" in proc.stderr


# --- version references the parser must refuse ---------------------------------------------


@pytest.mark.parametrize("ref", ["good/²", "good/99999999999999999999"], ids=["superscript", "huge"])
def test_show_refuses_odd_version_refs(home: Path, ref: str) -> None:
    line = _refused(home, "show", ref)
    assert "version" in line


def test_cli_versions_take_ascii_digits_only(tmp_path: Path) -> None:
    env = {**os.environ, "GOVFLOW_REGISTRY_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    for bad in ("1_0", "١", "+1", "0"):
        done = subprocess.run(
            [sys.executable, "-m", "govflow", "approve", "m", bad, "--actor", "bob"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, bad
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "version" in lines[0] and "not found" not in lines[0], lines
