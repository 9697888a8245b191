"""Audit verify throughput: ``Registry.verify_audit()`` over 100,000+ events on SQLite.

The log is written by the public API (registrations, evidence, stage moves, approvals,
rejections, promotions, aliases, rollbacks), so every event comes from the real code path and a
state replay has real state to re-derive. Building it on a RAM disk only makes the fsyncs free;
the finished database is checkpointed and copied to the ordinary temp folder before timing.

Anchor (a floor, not a competitor): read the same rows with the stdlib sqlite3 module and chain
sha256 over each row's text. Verify does that plus canonical JSON, the link checks and, where
the registry replays state, the replay. Both sides are timed the same number of runs, warm.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registry import Policy, Registry

TARGET = 100_000  # events/s
MODELS = 40
ARTIFACTS = 8


def _timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median seconds of ``fn`` over ``runs`` calls, GC off; and the last result."""
    times, out = [], None
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        finally:
            gc.enable()
    return statistics.median(times), out


def build(reg: Registry, events: int, root: Path) -> dict[str, int]:
    """Drive the API until the log holds at least ``events`` events; return actions by count."""
    files = []
    for i in range(ARTIFACTS):
        f = root / f"model-{i}.bin"
        f.write_bytes(f"model {i} ".encode() * 64)
        files.append(f)
    done = 0
    cycle = 0
    while done < events:
        name = f"m{cycle % MODELS}"
        v = reg.register(
            name,
            files[cycle % ARTIFACTS],
            actor="trainer",
            metrics={"auc": 0.8 + (cycle % 7) / 100},
            params={"depth": cycle % 9},
            tags={"team": "risk"},
        ).version
        reg.add_evidence(name, v, gate="data", passed=True, value=1.0, actor="ci")
        reg.add_evidence(
            name, v, gate="fairness", passed=cycle % 5 != 0, value=0.04, threshold=0.1, actor="ci"
        )
        reg.transition(name, v, "staging", actor="trainer")
        done += 4
        if cycle % 10 == 9:
            reg.reject(name, v, reason="metrics below champion", actor="reviewer")
            done += 1
        else:
            if cycle % 5 == 0:  # the failed fairness gate blocks production until it is waived
                reg.waive(name, v, "fairness", reason="reviewed: within tolerance", actor="reviewer")
                done += 1
            reg.approve(name, v, reason="ok", actor="reviewer")
            reg.transition(name, v, "production", actor="ops")
            reg.set_alias(name, "champion", v, actor="ops")
            done += 3
            if cycle % 25 == 24 and v > 1:
                try:
                    reg.rollback(name, reason="drift", actor="ops")
                    done += 1
                except Exception:  # noqa: BLE001 - a model with nothing to restore just skips it
                    pass
        cycle += 1
    with reg.db.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT action, count(*) FROM audit_events GROUP BY action").all()
    return {action: n for action, n in rows}


def floor(path: Path) -> int:
    """Read every audit row with sqlite3 and chain sha256 over its text; return the row count."""
    con = sqlite3.connect(path)
    try:
        prev = b"0" * 64
        n = 0
        for row in con.execute("SELECT * FROM audit_events ORDER BY seq"):
            prev = hashlib.sha256(prev + "\x1f".join(map(str, row)).encode()).hexdigest().encode()
            n += 1
        return n
    finally:
        con.close()


def run(quick: bool = False) -> str:
    """Build the log, time verify and the floor; return the markdown section."""
    events = 5_000 if quick else 100_000
    runs = 3
    started = datetime.now(UTC)
    shm = Path("/dev/shm")
    with (
        tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as fast,
        tempfile.TemporaryDirectory() as disk,
    ):
        build_db = Path(fast) / "registry.db"
        reg = Registry(url=f"sqlite:///{build_db}", artifact_root=str(Path(fast) / "art"), policy=Policy())
        t0 = time.perf_counter()
        actions = build(reg, events, Path(fast))
        build_s = time.perf_counter() - t0
        reg.close()
        con = sqlite3.connect(build_db)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        db = Path(disk) / "registry.db"
        shutil.copyfile(build_db, db)
        reg = Registry(url=f"sqlite:///{db}", artifact_root=str(Path(disk) / "art"), policy=Policy())
        try:
            reg.verify_audit()  # warm: page cache and prepared statements, as on a busy server
            t_verify, report = _timed(reg.verify_audit, runs)
        finally:
            reg.close()
        floor(db)
        t_floor, n_floor = _timed(lambda: floor(db), runs)
        size_mib = db.stat().st_size / 2**20
    if not report.ok:
        raise RuntimeError(f"verify failed on a log written by the API: {report.problem}")
    n = report.events
    if n != n_floor:
        raise RuntimeError(f"verify checked {n} events, the table holds {n_floor}")
    rate = n / t_verify
    mix = ", ".join(f"{a} {c:,}" for a, c in sorted(actions.items(), key=lambda kv: -kv[1]))
    scope = _scope()
    lines = [
        "## Audit verify (`bench/audit.py`)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores (shared with other "
        f"work during the run); SQLite file {size_mib:.0f} MiB, in the page cache (warm), WAL",
        f"- log: {n:,} events written through the public API in {build_s:.0f} s across {MODELS} "
        f"models: {mix}",
        f"- verify scope: {scope}",
        f"- both sides: median of {runs} runs after one warm-up, GC off",
        "- command: `python -m bench.audit`",
        "",
        "| case | seconds | events/s | vs floor |",
        "|---|---:|---:|---:|",
        f"| `Registry.verify_audit()` | {t_verify:.3f} | {rate:,.0f} | {t_verify / t_floor:.1f}× the floor's time |",
        f"| floor: sqlite3 read + sha256 per row | {t_floor:.3f} | {n_floor / t_floor:,.0f} | 1.0× |",
        "",
        f"Target: {TARGET:,} events/s. Result: {rate:,.0f} events/s, "
        + ("**met**." if rate >= TARGET else f"**not met** ({rate / TARGET:.0%} of the target)."),
    ]
    return "\n".join(lines) + "\n"


def _scope() -> str:
    """What verify covers."""
    return "hash chain plus state replay (tables compared with the replayed log)"


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv))
