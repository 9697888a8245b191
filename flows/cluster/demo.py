"""``python -m flows.cluster.demo``: three models on two process workers, told and measured.

1. The set-up: Prefect on PostgreSQL (UI on), two process workers, the registry server on
   PostgreSQL with a token per role, artifacts on S3 (moto).
2. A first version of each model, approved with ``govflow approve``.
3. The three retrain again at once; each is gated, staged and waits. The processes holding the
   waiting runs are counted. One is approved in the Prefect UI (Chromium, with a one-time code);
   with two still waiting, a worker is SIGKILLed with its process tree and restarted; the other
   two are approved with ``govflow approve``.
4. New data arrives for every model (each config's ``monitor.source``); only one model's has
   drifted. ``monitor`` runs for all three; the drifted model's ``drift-detected`` event triggers
   the ``rollback`` deployment, which reverts that model only.
Measured: time from approval to ``@production``, from the drift event to production reverted,
processes alive while runs wait; every command's exit code is listed at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from flows.cluster import story
from flows.cluster.browser import chromium_missing
from flows.cluster.processes import ClusterError, exit_on_sigterm
from flows.cluster.team import APPROVERS, OPERATOR, PIPELINE, Team

MODELS = ["credit-risk", "churn", "fraud"]
console = Console(width=None if sys.stdout.isatty() else 140)  # logs of `make` are read wide
START = time.monotonic()


def say(text: str) -> None:
    console.print(f"[dim]{time.monotonic() - START:6.1f}s[/dim]  {text}")


def settle_processes(run_ids: list[str], within: float = 30) -> tuple[int, float]:
    """Processes holding the waiting runs once they settle (0, or what is left after ``within`` s)."""
    began = time.monotonic()
    deadline = began + within
    while True:
        count = sum(len(p) for p in story.flow_run_processes(run_ids).values())
        if count == 0 or time.monotonic() > deadline:
            return count, time.monotonic() - began
        time.sleep(0.5)


def first_versions(team: Team, measured: dict[str, Any]) -> None:
    console.rule("2. A first version of each model")
    runs = story.start_retrains(team, team.configs)
    say(f"started {len(runs)} retrain runs with run_deployment('retrain/retrain')")
    waiting = story.wait_waiting(team, runs, timeout=600)
    for i, w in enumerate(waiting.values()):
        approver = APPROVERS[i % 2]
        began = story.approve_cli(team, approver, w)
        took = story.wait_production(team, w.model, w.version, began, timeout=300)
        measured[f"approval → production, {w.model}/{w.version} (govflow approve)"] = took
        say(f"{w.model}/{w.version} approved by {approver}; @production in {took:.1f} s")
    states = story.wait_final(team, runs, timeout=300)
    say("runs ended: " + ", ".join(f"{m} {s.name}" for m, s in states.items()))


def concurrent_round(team: Team, measured: dict[str, Any]) -> dict[str, story.Waiting]:
    console.rule("3. Three retrains at once, waiting for approval")
    runs = story.start_retrains(team, team.later)
    say(f"started {len(runs)} retrain runs at once")
    waiting = story.wait_waiting(team, runs, timeout=600)
    for w in waiting.values():
        say(f"{w.model}/{w.version} in staging, run {w.run_id[:8]} is {w.state}")
    ids = list(runs.values())
    count, took = settle_processes(ids)
    measured["flow-run processes alive while 3 runs wait"] = count
    infra = {n: s.proc.pid for n, s in team.sup.services.items() if s.alive}
    say(
        f"processes holding the 3 waiting runs: [bold]{count}[/bold] (settled after {took:.1f} s); "
        f"besides them {len(infra)} cluster processes: {', '.join(infra)}"
    )

    first, *others = (waiting[m] for m in MODELS)
    missing = chromium_missing()
    if missing:
        say(
            f"[yellow]{missing}: approving {first.model} with govflow approve instead of the UI form[/yellow]"
        )
        began = story.approve_cli(team, APPROVERS[1], first)
        how = "govflow approve"
    else:
        began = story.approve_in_form(team, APPROVERS[1], first)
        how = "Prefect UI form + code"
        say(f"{first.model}/{first.version}: {APPROVERS[1]} approved in the Prefect UI with a one-time code")
    took = story.wait_production(team, first.model, first.version, began, timeout=300)
    measured[f"approval → production, {first.model}/{first.version} ({how})"] = took
    say(f"{first.model}@production = {first.version} after {took:.1f} s")

    victim = story.worker_holding_most(team, [w.run_id for w in others])
    killed = team.kill_worker(victim)
    say(f"[red]SIGKILL[/red] worker {victim} and its process tree (pids {killed}) while 2 runs wait")
    team.start_worker(victim)
    team.wait_workers([victim])
    say(f"worker {victim} restarted and online again")
    for w in others:
        began = story.approve_cli(team, APPROVERS[0], w)
        took = story.wait_production(team, w.model, w.version, began, timeout=300)
        measured[f"approval → production, {w.model}/{w.version} (govflow approve, after the kill)"] = took
        say(f"{w.model}/{w.version} approved by {APPROVERS[0]}; @production in {took:.1f} s")
    states = story.wait_final(team, runs, timeout=300)
    say("runs ended: " + ", ".join(f"{m} {s.name}" for m, s in states.items()))
    measured["retrain final states"] = ", ".join(sorted({s.name for s in states.values()}))
    return waiting


def drift(team: Team, waiting: dict[str, story.Waiting], measured: dict[str, Any]) -> None:
    model = MODELS[-1]
    console.rule(f"4. New data for every model; only {model}'s has drifted")
    say(f"monitor deployment for all three; the drift-detected trigger runs rollback as {OPERATOR}")
    seen = story.drift_rollback(team, model, timeout=300)
    say("monitor runs: " + ", ".join(f"{m} {s.name}" for m, s in seen["monitors"].items()))
    say(
        f"rollback {seen['rollback'].name}: {model}@production {seen['before']} → {seen['after']} "
        f"in {seen['seconds']:.1f} s from {seen['from']}"
    )
    measured[f"drift event → production reverted, {model}"] = seen["seconds"]
    for other, now in seen["others"].items():
        kept = now == waiting[other].version
        say(f"{other}@production = {now} ({'unchanged' if kept else '[red]CHANGED[/red]'})")
        if not kept:
            raise ClusterError(f"{other} moved from {waiting[other].version} to {now} on {model}'s drift")
    if seen["other_rollbacks"]:
        raise ClusterError(f"{seen['other_rollbacks']} rollback runs were made for models that did not drift")
    measured["rollback runs for the models that did not drift"] = seen["other_rollbacks"]


def report(team: Team, measured: dict[str, Any]) -> None:
    console.rule("Measurements")
    table = Table("what", "measured")
    for what, value in measured.items():
        table.add_row(what, f"{value:.1f} s" if isinstance(value, float) else str(value))
    console.print(table)
    codes = Table("command", "exit code")
    for c in team.commands:
        codes.add_row(c.label, str(c.code))
    console.print(codes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.cluster.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--folder", type=Path, help="where logs, tokens, data and configs go (default: a temp folder)"
    )
    parser.add_argument("--rows", type=int, default=2000, help="training rows per model and period")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="govflow-cluster-"))
    team = Team(folder, MODELS, rows=args.rows)
    measured: dict[str, Any] = {}
    try:
        console.rule("1. The set-up")
        team.start()
        say(f"Prefect server + UI on PostgreSQL: {team.prefect_url}  (UI {team.prefect_url}/v2/runs)")
        say(
            f"registry server on PostgreSQL: {team.registry_url}; artifacts s3://govflow-cluster/registry on {team.s3_url}"
        )
        say(
            f"users: {PIPELINE} (pipeline, operator), {OPERATOR} (operator), {', '.join(APPROVERS)} (approver)"
        )
        say(f"workers {', '.join(team.workers)} on pool govflow-process; deployments from {team.project}")
        measured["set-up (servers, users, deploy, workers)"] = time.monotonic() - START
        first_versions(team, measured)
        waiting = concurrent_round(team, measured)
        drift(team, waiting, measured)
        report(team, measured)
        say(f"[green]story complete[/green]; logs in {folder / 'logs'}")
        return 0
    except (ClusterError, KeyboardInterrupt) as exc:
        report(team, measured)
        console.print("[red]cluster demo failed:[/red]", end=" ")
        console.print(str(exc), markup=False)
        console.print(f"logs in {folder / 'logs'}")
        return 1
    finally:
        team.close()


if __name__ == "__main__":
    sys.exit(main())
