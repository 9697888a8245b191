"""The cluster story, reduced: two models waiting on two process workers, one worker lost.

Everything is a real process: a Prefect server on PostgreSQL with its UI, two process workers
running the deployments of a copy of the project, the registry server on PostgreSQL with a token
per role, S3 on moto's standalone server. Both retrains wait for approval with no process held;
a worker is SIGKILLed with everything it started and restarted; one run is approved with
`govflow approve`, the other through the Prefect UI's form in headless Chromium with a one-time
code. Both end `Promoted`. `make cluster-demo` runs the full story (three models, a rollback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
import pytest

from flows.cluster import processes, story
from flows.cluster.browser import chromium_missing
from flows.cluster.processes import ClusterError, Supervisor, alive, process_tree, wait_until
from flows.cluster.team import APPROVERS, PIPELINE, Team

MODELS = ["credit-risk", "churn"]


@pytest.fixture(autouse=True)
def _same_postgres(pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The cluster makes its databases on the server the test suite was pointed at.
    monkeypatch.setattr(processes, "PG_ADMIN", pg_server)


@pytest.fixture
def team(pg_server: str, tmp_path: Path):
    missing = chromium_missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing + " (CI=true: the cluster test must run)", pytrace=False)
        pytest.skip(missing + "; the cluster test approves in the Prefect UI (set CI=true to fail instead)")
    t = Team(tmp_path / "cluster", MODELS, rows=1000)
    try:
        yield t.start()
    finally:
        databases = list(t.sup.databases)
        t.close()
        assert not any(s.alive for s in t.sup.services.values()), "a cluster process outlived close()"
        assert databases and not _existing(pg_server, databases), "a cluster database outlived close()"


def _existing(admin: str, names: list[str]) -> list[str]:
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,)).fetchall()
    return [r[0] for r in rows]


def _with_child(pid: int) -> list[int] | None:
    tree = process_tree(pid)
    return tree if len(tree) == 2 else None


# A process that ignores SIGTERM and starts a child that ignores it too: only SIGKILL ends them.
STUBBORN = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']); time.sleep(600)"
)


def test_cleanup_ends_every_process_tree_and_drops_the_databases(pg_server: str, tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, stop_timeout=1)
    db = sup.database("govflow_cluster_selftest")
    trees: list[list[int]] = []
    with pytest.raises(ClusterError, match="the story broke"):
        with sup:
            for name in ("worker-a", "prefect-server"):
                pid = sup.start(name, [sys.executable, "-c", STUBBORN], os.environ).proc.pid
                tree = wait_until(lambda p=pid: _with_child(p), 30, "the child to start")
                trees.append(tree)
            killed = sup.kill("worker-a")  # a lost machine: the worker and its child at once
            assert sorted(killed) == sorted(trees[0])
            assert not any(alive(pid) for pid in trees[0])
            with pytest.raises(ClusterError, match="already running"):
                sup.start("prefect-server", [sys.executable, "-c", "pass"], os.environ)
            raise ClusterError("the story broke")  # a failing step still cleans up
    assert not any(alive(pid) for pid in trees[1]), "SIGTERM was ignored and nothing escalated"
    assert _existing(pg_server, [db]) == []
    with pytest.raises(ClusterError, match="closed"):
        sup.start("late", [sys.executable, "-c", "pass"], os.environ)


def test_two_models_wait_survive_a_lost_worker_and_are_promoted(team: Team) -> None:
    runs = story.start_retrains(team, team.configs)
    waiting = story.wait_waiting(team, runs, timeout=150)
    assert sorted(waiting) == sorted(MODELS)
    assert all(w.version == 1 for w in waiting.values())

    # Waiting holds no process: each run's process exits once it is suspended.
    ids = list(runs.values())
    wait_until(
        lambda: not any(story.flow_run_processes(ids).values()),
        30,
        "no process to hold a waiting run",
        interval=0.5,
    )

    # A lost machine: the worker and everything it started die at once; a new one takes its place.
    victim = story.worker_holding_most(team, ids)
    worker_pid = team.worker_pids()[victim]
    killed = team.kill_worker(victim)
    assert worker_pid in killed and victim not in team.worker_pids()
    team.start_worker(victim)
    team.wait_workers([victim])
    for model, w in waiting.items():  # still waiting, and still in staging
        assert story.read_run(team, w.run_id).state.is_paused(), model
        assert story.staged_version(team, model) == w.version

    first, second = (waiting[m] for m in MODELS)
    # The registrant may not approve its own version, whichever channel it tries.
    refused = team.govflow(PIPELINE, "approve", first.model, "1", "--reason", "mine", check=False)
    assert refused.returncode == 2 and "ml-pipeline" in refused.stderr
    assert story.read_run(team, first.run_id).state.is_paused()

    began = story.approve_cli(team, APPROVERS[0], first)
    story.wait_production(team, first.model, first.version, began, timeout=120)
    began = story.approve_in_form(team, APPROVERS[1], second)
    story.wait_production(team, second.model, second.version, began, timeout=120)

    states = story.wait_final(team, runs, timeout=120)
    assert {m: s.name for m, s in states.items()} == {m: "Promoted" for m in MODELS}
    reg = team.registry()
    try:
        a, b = (reg.get_version(w.model, w.version) for w in (first, second))
        assert [(x.actor, x.channel, x.claimed_by) for x in a.approvals] == [(APPROVERS[0], "cli", None)]
        assert [(x.actor, x.channel, x.claimed_by) for x in b.approvals] == [
            (APPROVERS[1], "prefect-form", None)
        ]
        assert a.registered_by == b.registered_by == PIPELINE
        assert a.artifact.uri.startswith("s3://") and reg.verify_audit().ok
    finally:
        reg.close()
    assert [c.code for c in team.commands if c.label.startswith("govflow approve")] == [2, 0, 0]
