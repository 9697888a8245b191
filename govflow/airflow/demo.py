"""``make airflow-demo``: the governed loop on a real Airflow 3, told as it happens.

A local Airflow (api-server, scheduler, dag-processor on loopback) with two users. alice
triggers a retrain; bob approves it in Airflow and the registry records bob, on the airflow-hitl
channel, as the approver. alice then approves her own version and the registry refuses her.
Drift found by the monitor DAG starts the rollback DAG through an asset event.
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from govflow.airflow import story
from govflow.airflow.local import LocalAirflow
from govflow.airflow.rest import AirflowClient

REPO = Path(__file__).resolve().parents[2]
USERS = {"alice": "user", "bob": "user"}


def _dag(kind: str) -> str:
    return f"govflow_{kind}_{story.MODELS['main'].replace('-', '_')}"


def _say(text: str) -> None:
    print(text, flush=True)


def _finish(api: AirflowClient, dag_id: str, run_id: str) -> None:
    state = api.wait_run(dag_id, run_id, 600)
    if state != "success":
        failed = [t for t, s in api.task_states(dag_id, run_id).items() if s == "failed"]
        logs = "\n".join(api.task_log(dag_id, run_id, t)[-1500:] for t in failed)
        raise SystemExit(f"error: {dag_id} run {run_id} ended {state}; failed tasks {failed}\n{logs}")


def _retrain(af: LocalAirflow, trigger: str, answer: str, option: str) -> tuple[dict[str, Any], float]:
    """alice (or ``trigger``) starts a retrain; ``answer`` chooses ``option`` once it asks."""
    dag_id = _dag("retrain")
    with af.client(trigger) as starter, af.client(answer) as responder:
        run_id = starter.trigger(dag_id)
        _say(f"  {trigger} triggered {dag_id} (run {run_id}); validate → train → evaluate → register → gates")
        asked = af.wait_hitl(responder, dag_id, run_id, "approval", 600)
        _say(f"  Airflow asks: {asked['subject']} (options {asked['options']}, default {asked['defaults']})")
        started = time.monotonic()
        answered = responder.respond(dag_id, run_id, "approval", [option])
        if answered.status_code != 200:
            raise SystemExit(f"error: {answer}'s answer was refused by Airflow: {answered.text}")
        _say(f"  {answer} answers {option} through PATCH …/hitlDetails")
        _finish(responder, dag_id, run_id)
        return responder.xcom(dag_id, run_id, "outcome"), time.monotonic() - started


DECISIONS = ("version.approved", "version.rejected", "version.promoted", "model.deployed")


def _trail(tale: story.Story, model: str, version: int, only: tuple[str, ...] = ()) -> None:
    """The registry's audit events for one version (``only`` these actions, if given)."""
    with closing(tale.registry()) as reg:
        for e in reg.audit_log(model=model):
            if e.version == version and (not only or e.action in only):
                via = e.payload.get("channel") or ""
                _say(f"    {e.at:%H:%M:%S}  {e.action:<22} {e.actor:<18} {via}")


def main(folder: Path | None = None) -> int:
    folder = folder or REPO / ".govflow" / "airflow-demo"
    shutil.rmtree(folder, ignore_errors=True)
    tale = story.prepare(folder / "story")
    _say(f"govflow on Airflow 3: configs, data and the registry under {folder}")
    started = time.monotonic()
    with LocalAirflow(folder / "home", REPO / "dags", USERS, env=tale.env()) as af:
        af.wait_dag(_dag("retrain"), timeout=300)
        db = "PostgreSQL" if af.database_url.startswith("postgresql") else "SQLite"
        _say(
            f"Airflow up at {af.base_url} in {time.monotonic() - started:.0f} s (api-server, scheduler, "
            f"dag-processor; metadata in {db}); users: alice and bob (role user)"
        )
        model = story.MODELS["main"]

        _say("\n1. A retrain approved by another Airflow user")
        out, took = _retrain(af, "alice", "bob", "Approve")
        _say(f"  outcome: {out['outcome']} {model} v{out['version']}, approver {out['approver']} ({took:.1f} s from the answer to the run's end, deployed)")
        _say("  the registry's audit trail for it:")
        _trail(tale, model, out["version"])
        first = out["version"]

        _say("\n2. The registrant approves her own version")
        out, _ = _retrain(af, "alice", "alice", "Approve")
        _say(f"  outcome: {out['outcome']}: {out['reason']}")
        _trail(tale, model, out["version"], DECISIONS)

        _say("\n3. A second approved version, then drift")
        out, _ = _retrain(af, "alice", "bob", "Approve")
        _say(f"  outcome: {out['outcome']} v{out['version']} by {out['approver']}")
        with af.client("alice") as alice:
            before = len(alice.runs(_dag("rollback")))
            arrived = tale.drift_arrives()
            _say(f"  a drifted day arrives in monitor.source: {arrived.name}")
            run_id = alice.trigger(_dag("monitor"))
            _finish(alice, _dag("monitor"), run_id)
            found = alice.xcom(_dag("monitor"), run_id, "check")
            _say(f"  monitor: drift {found['verdict']} (max PSI {found['psi']:.2f}); asset event govflow://drift/{model}")
            deadline = time.monotonic() + 300
            while len(runs := alice.runs(_dag("rollback"))) <= before:
                if time.monotonic() > deadline:
                    raise SystemExit("error: the rollback DAG did not start within 300 s of the asset event")
                time.sleep(1)
            _finish(alice, _dag("rollback"), runs[-1]["dag_run_id"])
            [done] = alice.xcom(_dag("rollback"), runs[-1]["dag_run_id"], "rollback")
        _say(f"  rollback DAG (started by the asset event): {done['reason']}")
        with closing(tale.registry()) as reg:
            live = reg.get(f"{model}@production")
            _say(f"  {model}@production is v{live.version} again (approved first in step 1: v{first})")
            _say(f"  audit chain verifies: {reg.verify_audit().ok}")
    _say(f"\nDone in {time.monotonic() - started:.0f} s. Registry: {tale.registry_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
