"""Cross-process safety (invariants 1, 2, 4) with real processes on both backends."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from registry import Policy, Registry, Stage

WORKERS = 8
PER_WORKER = 100


def _register_many(url: str, root: str, artifact: str, worker: int, n: int) -> list[int]:
    reg = Registry(url=url, artifact_root=root, policy=Policy())
    out = [reg.register("race", artifact, actor=f"w{worker}").version for _ in range(n)]
    reg.close()
    return out


def _promote(url: str, root: str, version: int, barrier) -> str:
    reg = Registry(url=url, artifact_root=root, policy=Policy())
    barrier.wait()
    reg.transition("race", version, Stage.PRODUCTION, actor=f"ops{version}")
    reg.close()
    return "ok"


def _run(fn, args_list):
    ctx = mp.get_context("spawn")
    with ctx.Pool(len(args_list)) as pool:
        return pool.starmap(fn, args_list)


def test_concurrent_registrations_are_gapless(registry: Registry, artifact: Path, tmp_path: Path) -> None:
    root = str(tmp_path / "artifacts")
    results = _run(
        _register_many,
        [(registry.url, root, str(artifact), w, PER_WORKER) for w in range(WORKERS)],
    )
    numbers = sorted(n for chunk in results for n in chunk)
    assert numbers == list(range(1, WORKERS * PER_WORKER + 1))
    assert [v.version for v in registry.versions("race")][:1] == [WORKERS * PER_WORKER]
    report = registry.verify_audit()
    assert report.ok and report.events == WORKERS * PER_WORKER + 1  # and the seeded policy


def test_racing_promotions_leave_one_production(registry: Registry, artifact: Path, tmp_path: Path) -> None:
    racers = 6
    for _ in range(racers):
        v = registry.register("race", artifact, actor="alice")
        registry.transition("race", v.version, "staging", actor="alice")
        registry.approve("race", v.version, actor="bob")
    manager = mp.get_context("spawn").Manager()
    barrier = manager.Barrier(racers)
    root = str(tmp_path / "artifacts")
    assert _run(_promote, [(registry.url, root, n, barrier) for n in range(1, racers + 1)]) == ["ok"] * racers
    stages = [v.stage for v in registry.versions("race")]
    assert stages.count(Stage.PRODUCTION) == 1
    assert stages.count(Stage.ARCHIVED) == racers - 1
    winner = registry.resolve("race@production").version
    assert registry.get_version("race", winner).stage == Stage.PRODUCTION
    assert registry.verify_audit().ok
    manager.shutdown()


def test_four_processes_create_schema_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    artifact = tmp_path / "m.bin"
    artifact.write_bytes(b"x")
    results = _run(_register_many, [(url, str(tmp_path / "a"), str(artifact), w, 5) for w in range(4)])
    assert sorted(v for chunk in results for v in chunk) == list(range(1, 21))


def _write_until(url: str, root: str, artifact: str, worker: int, stop) -> int:
    reg = Registry(url=url, artifact_root=root, policy=Policy())
    done = 0
    while not stop.is_set() and done < 400:
        number = reg.register("busy", artifact, actor=f"w{worker}").version
        reg.add_evidence("busy", number, gate="acc", passed=True, value=0.9, actor="ci")
        done += 1
    reg.close()
    return done


def test_verify_under_concurrent_writers_never_raises_a_false_alarm(
    registry: Registry, artifact: Path, tmp_path: Path
) -> None:
    """Events and head are read in one snapshot: 3 writing processes cannot make them disagree."""
    ctx = mp.get_context("spawn")
    stop = ctx.Manager().Event()
    root = str(tmp_path / "artifacts")
    with ctx.Pool(3) as pool:
        pending = pool.starmap_async(_write_until, [(registry.url, root, str(artifact), w, stop) for w in range(3)])
        try:
            reports = []
            while len(reports) < 20 and not pending.ready():
                if registry.audit_log(limit=1):
                    reports.append(registry.verify_audit())
        finally:
            stop.set()
        written = sum(pending.get(timeout=120))
    bad = [r.message for r in reports if not r.ok]
    assert not bad, bad
    assert len(reports) >= 5 and written > 0
    assert registry.verify_audit().ok
