"""Crash matrix: SIGKILL a registry writer at random points, then prove nothing is half-done.

A worker process (worker.py) loops register -> staging -> approve -> production -> rollback
on one model, uploading a fresh artifact of a few MB each time, and journals each step. The
test kills it with SIGKILL, either just after a chosen operation starts (rotating through all
of them) or at a purely random moment, and then checks, on the same database every time:

- the registry opens and ``verify_audit()`` is ok (the chain, and the state against the log);
- every version's artifact is present and reads back through the store's verified read;
- the operation in flight is all or nothing: its state exists iff its audit event does;
- ``govflow artifacts gc --older-than 0s`` removes exactly the unreferenced blobs.

GOVFLOW_SOAK_KILLS sets the kills per backend (default 5; ``make soak`` uses 100) and
GOVFLOW_SOAK_SEED replays a run (the seed is printed).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from registry import Policy, Registry
from registry.db.tables import approvals
from tests.reliability.cli import run_cli
from tests.reliability.worker import MODEL, OPS, read_journal

KILLS = int(os.environ.get("GOVFLOW_SOAK_KILLS", "5"))
WORKER = Path(__file__).with_name("worker.py")
START_DEADLINE = 60.0  # seconds for a worker to start and reach the targeted operation
# Initial guesses of each operation's duration; replaced by what the journals show.
GUESS = {"register": 0.05, "stage": 0.005, "approve": 0.005, "promote": 0.005, "rollback": 0.005}


@dataclass
class Tally:
    """What the kills hit, for the run's summary line."""

    kills: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)
    versions: int = 0
    orphans_removed: int = 0
    partial_uploads_removed: int = 0


def _wait_for(proc: subprocess.Popen, journal: Path, want: str | None, seen: int, errlog: Path) -> None:
    """Poll the journal until the worker is ready (``want`` None) or starts operation ``want``."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        entries = read_journal(journal)
        if want is None and entries:
            return
        if any(e["event"] == "start" and e["op"] == want for e in entries[seen:]):
            return
        if proc.poll() is not None:
            pytest.fail(f"worker exited with {proc.returncode}: {errlog.read_text()[-2000:]}")
        time.sleep(0.001)
    pytest.fail(f"worker did not reach {want or 'ready'} within {START_DEADLINE}s")


def _kill_once(
    url: str, root: str, journal: Path, rng: random.Random, target: str | None, durations: dict
) -> None:
    """Start a worker, kill it with SIGKILL during ``target`` (or at a random moment)."""
    errlog = journal.with_suffix(".stderr")
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), url, root, str(journal), str(rng.randrange(2**32))],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        _wait_for(proc, journal, None, 0, errlog)
        if target is None:
            delay = rng.uniform(0, 0.3)
        else:
            _wait_for(proc, journal, target, 1, errlog)
            # Up to a bit past the operation's usual length: mostly inside it, sometimes just after.
            delay = rng.uniform(0, 1.3 * durations[target])
        time.sleep(delay)  # the kill point itself, not a wait for a condition
        if proc.poll() is not None:
            pytest.fail(f"worker exited with {proc.returncode}: {errlog.read_text()[-2000:]}")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    for e in read_journal(journal):
        if e["event"] == "done":
            durations[e["op"]] = max(GUESS[e["op"]], 0.8 * durations[e["op"]] + 0.2 * e["seconds"])


def _replay_stages(events: list) -> dict[int, str]:
    """Each version's stage as the audit log tells it."""
    stage: dict[int, str] = {}
    for e in events:
        p = e.payload
        if e.action == "version.registered":
            stage[e.version] = "development"
        elif e.action == "version.transitioned":
            stage[e.version] = p["to"]
        elif e.action == "version.promoted":
            stage[e.version] = "production"
            if p.get("replaced") is not None:
                stage[p["replaced"]] = "archived"
        elif e.action == "model.rolled_back":
            stage[p["from_version"]] = "archived"
            stage[p["to_version"]] = "production"
        elif e.action == "version.rejected" and p.get("moved_to"):
            stage[e.version] = p["moved_to"]
    return stage


def _effect(reg: Registry, op: str, n: int, versions: dict, new_events: list) -> tuple[bool, bool]:
    """(state present, audit event present) for operation ``op`` on version ``n``."""
    v = versions.get(n)

    def event(action: str, **payload: object) -> bool:
        return any(
            e.action == action
            and all(e.payload.get(k) == val for k, val in payload.items())
            and (action == "model.rolled_back" or e.version == n)
            for e in new_events
        )

    if op == "register":
        return v is not None, event("version.registered")
    if op == "stage":
        return v is not None and v.stage.value == "staging", event("version.transitioned", to="staging")
    if op == "approve":
        full = reg.get_version(MODEL, n)
        state = any(a.actor == "bob" and a.decision == "approve" and a.current for a in full.approvals)
        return state, event("version.approved")
    if op == "promote":
        return v is not None and v.stage.value == "production", event("version.promoted")
    return v is not None and v.rolled_back, event("model.rolled_back", from_version=n)


def _check(url: str, root: str, journal: Path, head_before: int, checked: set[str], tally: Tally) -> None:
    """Everything that must hold after a kill, on the database the worker left behind."""
    reg = Registry(url=url, artifact_root=root, policy=Policy())
    try:
        report = reg.verify_audit()
        assert report.ok, f"verify_audit after kill: seq {report.first_bad_seq}: {report.problem}"
        events = reg.audit_log(model=MODEL)
        versions = (
            {v.version: v for v in reg.versions(MODEL)} if any(m.name == MODEL for m in reg.models()) else {}
        )
        registered = sorted(e.version for e in events if e.action == "version.registered")
        assert registered == sorted(versions), "version rows and version.registered events differ"
        assert _replay_stages(events) == {n: v.stage.value for n, v in versions.items()}
        decisions = sum(e.action in ("version.approved", "version.rejected") for e in events)
        with reg.db.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(approvals)).scalar_one() == decisions
        in_prod = [n for n, v in versions.items() if v.stage.value == "production"]
        alias = [n for n, v in versions.items() if "production" in v.aliases]
        assert in_prod == alias and len(in_prod) <= 1, (in_prod, alias)

        # The operation in flight at the kill: all of it or none of it.
        entries = read_journal(journal)
        new_events = [e for e in events if e.seq > head_before]
        done = [(e["op"], e["version"]) for e in entries if e["event"] == "done"]
        for op, n in done:  # finished steps are on the record (their state may have moved on since)
            assert _effect(reg, op, n, versions, new_events)[1], f"{op} {MODEL}/{n} finished but has no event"
        last = entries[-1]
        if last["event"] == "start":
            op, n = last["op"], last["version"]
            state, event = _effect(reg, op, n, versions, new_events)
            assert state == event, f"{op} {MODEL}/{n} half-done at the kill: state={state}, event={event}"
            tally.in_flight[op] = tally.in_flight.get(op, 0) + 1
            tally.committed[op] = tally.committed.get(op, 0) + int(state)
            if op == "register" and state:
                assert versions[n].artifact.sha256 == last["sha256"]

        # Artifacts: every version's blob is there; new ones read back through the verified read.
        store = reg.artifacts
        referenced = {v.artifact.sha256 for v in versions.values()}
        for v in versions.values():
            blob = store.stat(v.artifact.sha256)
            assert blob is not None and blob.size == v.artifact.size, f"{v.ref}: artifact missing"
            if v.artifact.sha256 not in checked:
                fetched = store.get(v.artifact.sha256, journal.parent / "fetched.bin")
                assert fetched.size == v.artifact.size
                checked.add(v.artifact.sha256)
        tally.versions = len(versions)

        # GC removes exactly the blobs no version references, and nothing else.
        listed = {b.sha256 for b in store.list_blobs()}
        orphans = listed - referenced
        gc = run_cli("artifacts", "gc", "--older-than", "0s", "--json", "--actor", "gc-test")
        assert gc.code == 0, gc.err
        report = json.loads(gc.out)
        assert set(report["deleted"]) == orphans
        tally.partial_uploads_removed += report["temp_removed"]
        assert {b.sha256 for b in store.list_blobs()} == referenced
        leftovers = list((Path(root) / "tmp").glob("upload-*")) if (Path(root) / "tmp").is_dir() else []
        assert leftovers == [], f"partial uploads left after gc: {leftovers}"
        tally.orphans_removed += len(orphans)
        assert reg.verify_audit().ok
    finally:
        reg.close()


def _head(url: str, root: str) -> int:
    reg = Registry(url=url, artifact_root=root, policy=Policy())
    try:
        log = reg.audit_log(limit=1)
        return log[-1].seq if log else 0
    finally:
        reg.close()


def test_crash_matrix(backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = int(os.environ.get("GOVFLOW_SOAK_SEED") or random.SystemRandom().randrange(2**32))
    backend = backend_url.split(":", 1)[0]
    print(f"crash matrix on {backend}: GOVFLOW_SOAK_SEED={seed} GOVFLOW_SOAK_KILLS={KILLS}")
    rng = random.Random(seed)
    root = str(tmp_path / "artifacts")
    monkeypatch.setenv("GOVFLOW_REGISTRY_URL", backend_url)
    monkeypatch.setenv("GOVFLOW_ARTIFACT_ROOT", root)
    Registry(url=backend_url, artifact_root=root, policy=Policy()).close()  # schema before any kill
    durations = dict(GUESS)
    tally = Tally()
    checked: set[str] = set()
    started = time.monotonic()
    for i in range(KILLS):
        # Rotate through every operation; every sixth kill lands at a purely random moment.
        target = None if i % 6 == 5 else OPS[i % 6]
        journal = tmp_path / f"journal-{i}.jsonl"
        head = _head(backend_url, root)
        _kill_once(backend_url, root, journal, rng, target, durations)
        try:
            _check(backend_url, root, journal, head, checked, tally)
        except AssertionError as exc:
            raise AssertionError(f"kill {i} (target {target}, GOVFLOW_SOAK_SEED={seed}): {exc}") from exc
        tally.kills += 1
    print(
        f"crash matrix on {backend}: {tally.kills} kills survived in {time.monotonic() - started:.1f}s; "
        f"{tally.versions} versions; in flight at the kill {tally.in_flight}, of which committed "
        f"{tally.committed}; gc removed {tally.orphans_removed} orphan blobs and "
        f"{tally.partial_uploads_removed} partial uploads"
    )


def test_crash_check_catches_a_half_done_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The post-kill check is not blind: a stage written without its event fails it."""
    url, root = f"sqlite:///{tmp_path / 'registry.db'}", str(tmp_path / "artifacts")
    monkeypatch.setenv("GOVFLOW_REGISTRY_URL", url)
    monkeypatch.setenv("GOVFLOW_ARTIFACT_ROOT", root)
    reg = Registry(url=url, artifact_root=root, policy=Policy())
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(os.urandom(64))
    reg.register(MODEL, artifact, actor="alice")
    head = _head(url, root)
    journal = tmp_path / "journal.jsonl"
    journal.write_text(json.dumps({"event": "start", "op": "stage", "version": 1, "sha256": None}) + "\n")
    _check(url, root, journal, head, set(), Tally())  # nothing happened yet: consistent

    with reg.db.engine.begin() as conn:  # half of a transition: the state without its event
        conn.execute(sa.text("UPDATE versions SET stage = 'staging'"))
    reg.close()
    with pytest.raises(AssertionError) as caught:
        _check(url, root, journal, head, set(), Tally())
    assert "staging" in str(caught.value)
