"""CLI start-up benchmark: ``govflow show`` and ``govflow --help`` against two CLIs of the field.

Each command is a fresh process, as a user at a shell runs it: interpreter start, imports, work,
exit. The anchors, timed in the same run, are ``mlflow models --help`` (MLflow's registry CLI)
and ``prefect version`` (the CLI our flows run under). ``show`` reads a version in production
from a SQLite registry made here through the CLI itself. Wall and CPU (user + system of the
child) are medians after one warm-up run, so the page cache holds the files for every side.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

TARGET_SHOW_S = 0.4
MODEL = "bench-cli"


def _script(name: str) -> list[str] | None:
    """The console script ``name`` installed beside this interpreter, or None."""
    path = Path(sys.executable).parent / name
    found = path if path.exists() else shutil.which(name)
    return [str(found)] if found else None


def timed(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """(wall s, CPU s) medians of ``runs`` runs of ``cmd`` after one warm-up; refuses a failure."""
    walls, cpus = [], []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        if i:  # the first run warms the page cache and the bytecode caches
            walls.append(wall)
            cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(walls), statistics.median(cpus)


def _registry(root: Path, env: dict[str, str]) -> None:
    """A registry with MODEL v1 in production, made through the CLI."""
    govflow = [sys.executable, "-m", "govflow"]
    (root / "model.bin").write_bytes(os.urandom(1024))
    steps = [
        ["register", MODEL, "--artifact", str(root / "model.bin"), "--metric", "roc_auc=0.81"],
        ["transition", MODEL, "1", "staging"],
        ["approve", MODEL, "1", "--reason", "bench", "--actor", "bench-approver"],
        ["transition", MODEL, "1", "production", "--actor", "bench-approver"],
    ]
    for step in steps:
        proc = subprocess.run([*govflow, *step], env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"govflow {' '.join(step)}: {proc.stderr.strip()}")


def run(quick: bool = False) -> str:
    """Time the commands; return the markdown section."""
    runs = 3 if quick else 15
    started = datetime.now(UTC)
    govflow = _script("govflow") or [sys.executable, "-m", "govflow"]
    anchors = {"mlflow models --help": _script("mlflow"), "prefect version": _script("prefect")}
    rows: dict[str, tuple[float, float] | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GOVFLOW_", "PREFECT_API"))},
            "GOVFLOW_REGISTRY_URL": f"sqlite:///{root / 'registry.db'}",
            "GOVFLOW_ARTIFACT_ROOT": str(root / "artifacts"),
            "GOVFLOW_ACTOR": "bench-registrant",
            "PREFECT_HOME": str(root / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "COLUMNS": "100",
        }
        _registry(root, env)
        rows[f"govflow show {MODEL}@production"] = timed([*govflow, "show", f"{MODEL}@production"], env, runs)
        rows["govflow --help"] = timed([*govflow, "--help"], env, runs)
        rows["govflow --version"] = timed([*govflow, "--version"], env, runs)
        for label, script in anchors.items():
            rows[label] = timed([*script, *label.split()[1:]], env, runs) if script else None
    show = rows[f"govflow show {MODEL}@production"]
    assert show is not None
    lines = [
        "## CLI start-up (`bench/cli.py`)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores (shared with other "
        "work during the run); each command a fresh process, as typed at a shell",
        f"- median of {runs} runs after one warm-up; CPU is the child's user + system time",
        "- `show` reads a version in production from a local SQLite registry",
        "- command: `python -m bench cli`",
        "",
        "| command | wall s | CPU s | vs anchor (wall) |",
        "|---|---:|---:|---:|",
    ]
    pairs = {
        f"govflow show {MODEL}@production": "prefect version",
        "govflow --help": "mlflow models --help",
        "govflow --version": "prefect version",
    }
    for label, figures in rows.items():
        if figures is None:
            lines.append(f"| `{label}` (anchor) | not installed | | |")
            continue
        anchor = rows.get(pairs.get(label, ""))
        ratio = f"{figures[0] / anchor[0]:.2f}× `{pairs[label]}`" if anchor else "anchor"
        name = f"`{label}`" + ("" if label in pairs else " (anchor)")
        lines.append(f"| {name} | {figures[0]:.3f} | {figures[1]:.3f} | {ratio} |")
    met = show[0] <= TARGET_SHOW_S
    lines += [
        "",
        f"Target: `govflow show` within {TARGET_SHOW_S} s wall. Result: {show[0]:.3f} s, "
        + ("**met**." if met else f"**not met** ({show[0] / TARGET_SHOW_S:.1f}× the target)."),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
