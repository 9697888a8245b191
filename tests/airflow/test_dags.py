"""govflow's DAGs on a real Airflow: api-server, scheduler and dag-processor on loopback.

Runs are triggered and approval requests answered through Airflow's REST API, as Airflow users:
alice triggers (so she is the registrant), bob approves or rejects, carol only views. One Airflow
serves the module, and the tests run in order: the drift test rolls back the promotions the
approval tests made.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from govflow.airflow import story
from govflow.airflow.local import LocalAirflow
from govflow.airflow.rest import AirflowClient
from registry.entities import Decision
from registry.stages import Stage

REPO = Path(__file__).resolve().parents[2]
USERS = {"alice": "user", "bob": "user", "carol": "viewer"}


def dag(kind: str, key: str) -> str:
    return f"govflow_{kind}_{story.MODELS[key].replace('-', '_')}"


@dataclass
class World:
    tale: story.Story
    airflow: LocalAirflow
    early: dict[str, str] = field(default_factory=dict)  # runs started with the fixture

    def api(self, user: str) -> AirflowClient:
        return self.airflow.client(user)

    def finish(self, api: AirflowClient, dag_id: str, run_id: str, timeout: float = 600) -> dict[str, Any]:
        """Wait for the run to succeed; its ``outcome`` task's result (or the failing tasks' logs)."""
        state = api.wait_run(dag_id, run_id, timeout)
        if state != "success":
            states = api.task_states(dag_id, run_id)
            logs = [api.task_log(dag_id, run_id, t)[-2000:] for t, s in states.items() if s == "failed"]
            pytest.fail(f"{dag_id}/{run_id} ended {state}: {states}\n" + "\n".join(logs))
        return api.xcom(dag_id, run_id, "outcome") if dag_id.startswith("govflow_retrain") else {}

    def ask(self, api: AirflowClient, run_id: str, key: str = "main") -> dict[str, Any]:
        return self.airflow.wait_hitl(api, dag("retrain", key), run_id, "approval", 300)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    folder = tmp_path_factory.mktemp("airflow-dags")
    tale = story.prepare(folder / "story", approval_timeout=8)
    with LocalAirflow(folder / "home", REPO / "dags", USERS, env=tale.env()) as airflow:
        for key in story.MODELS:
            airflow.wait_dag(dag("retrain", key), timeout=180)
        w = World(tale, airflow)
        with w.api("alice") as alice:
            # Started now, checked later: runs that need no answer go on while others wait.
            w.early["strict"] = alice.trigger(dag("retrain", "strict"))
            w.early["timeout"] = alice.trigger(dag("retrain", "timeout"))
        yield w


def _version(w: World, out: dict[str, Any]) -> Any:
    with closing(w.tale.registry()) as reg:
        return reg.get_version(out["model"], out["version"])


def test_approved_by_another_airflow_user_is_promoted_with_that_user_and_channel(world: World) -> None:
    with world.api("alice") as alice, world.api("bob") as bob:
        run_id = alice.trigger(dag("retrain", "main"))
        asked = world.ask(bob, run_id)
        assert asked["defaults"] == ["Reject"] and asked["options"] == ["Approve", "Reject"]
        assert "### Gates" in asked["body"] and "### Against production" in asked["body"]
        assert "Registered by **alice**" in asked["body"]
        answered = bob.respond(dag("retrain", "main"), run_id, "approval", ["Approve"])
        assert answered.status_code == 200, answered.text
        out = world.finish(bob, dag("retrain", "main"), run_id)
    assert out["outcome"] == "promoted" and out["approver"] == "bob"
    v = _version(world, out)
    assert v.stage == Stage.PRODUCTION and v.registered_by == "alice"
    approval = [a for a in v.approvals if a.decision == Decision.APPROVE][-1]
    assert (approval.actor, approval.channel) == ("bob", "airflow-hitl")
    with closing(world.tale.registry()) as reg:
        trail = [(e.action, e.actor, e.payload.get("channel")) for e in reg.audit_log(model=v.model)]
        assert ("version.approved", "bob", "airflow-hitl") in trail
        assert reg.get(f"{v.model}@production").version == v.version
        assert reg.verify_audit().ok


def test_self_approval_is_refused_a_viewer_cannot_answer_and_a_reject_rejects(world: World) -> None:
    main = dag("retrain", "main")
    with world.api("alice") as alice, world.api("bob") as bob, world.api("carol") as carol:
        self_run, reject_run, again_run, forged_run = (alice.trigger(main) for _ in range(4))
        world.ask(alice, forged_run)
        # alice forges bob's answer: an XCom naming him, the approval task marked done by hand.
        bobs = {"chosen_options": ["Approve"], "responded_by_user": {"id": "bob", "name": "bob"}}
        for key in ("return_value", "answer"):
            alice.add_xcom(main, forged_run, "approval", key, {**bobs, "outcome": "approved", "approver": "bob"})
        assert alice.set_task_state(main, forged_run, "approval", "success").status_code == 200
        world.ask(alice, self_run)
        assert carol.respond(main, self_run, "approval", ["Approve"]).status_code == 403
        assert alice.respond(main, self_run, "approval", ["Approve"]).status_code == 200
        world.ask(bob, reject_run)
        assert bob.respond(main, reject_run, "approval", ["Reject"]).status_code == 200
        world.ask(bob, again_run)
        assert bob.respond(main, again_run, "approval", ["Approve"]).status_code == 200
        refused = world.finish(alice, main, self_run)
        rejected = world.finish(bob, main, reject_run)
        promoted = world.finish(bob, main, again_run)
        forged = world.finish(alice, main, forged_run)
    assert forged["outcome"] == "rejected" and "no approval recorded in the registry" in forged["reason"]
    assert not [a for a in _version(world, forged).approvals if a.decision == Decision.APPROVE]
    assert refused["outcome"] == "rejected" and "separation of duties" in refused["reason"]
    v = _version(world, refused)
    assert v.stage == Stage.DEVELOPMENT and not [a for a in v.approvals if a.decision == Decision.APPROVE]
    assert rejected["outcome"] == "rejected"
    last = _version(world, rejected).approvals[-1]
    assert (last.decision, last.actor, last.channel) == (Decision.REJECT, "bob", "airflow-hitl")
    assert promoted["outcome"] == "promoted"  # a second promotion: the drift test rolls it back


def test_failing_gates_ask_no_approval(world: World) -> None:
    strict, run_id = dag("retrain", "strict"), world.early["strict"]
    with world.api("alice") as alice:
        out = world.finish(alice, strict, run_id)
        states = alice.task_states(strict, run_id)
        assert alice.hitl_details(strict, run_id) == []
    assert out["outcome"] == "gates-failed" and "performance.roc_auc" in out["reason"]
    assert {states[t] for t in ("approval", "promote", "deploy")} == {"skipped"}
    assert _version(world, out).stage == Stage.DEVELOPMENT


def test_no_answer_before_the_timeout_rejects(world: World) -> None:
    timeout, run_id = dag("retrain", "timeout"), world.early["timeout"]
    with world.api("alice") as alice:
        out = world.finish(alice, timeout, run_id)
        [detail] = alice.hitl_details(timeout, run_id)
    assert detail["chosen_options"] == ["Reject"] and detail["responded_by_user"] is None
    assert out["outcome"] == "timed-out" and "approval timed out" in out["reason"]
    v = _version(world, out)
    last = v.approvals[-1]
    assert v.stage == Stage.DEVELOPMENT
    assert (last.decision, last.actor, last.channel) == (Decision.REJECT, "alice", "airflow-hitl")


def test_drift_in_the_monitor_dag_rolls_back_through_the_asset_event_once(world: World) -> None:
    model = story.MODELS["main"]
    monitor, rollback = dag("monitor", "main"), dag("rollback", "main")
    with closing(world.tale.registry()) as reg:
        live = reg.get(f"{model}@production").version
    with world.api("alice") as alice:
        for round_no in (1, 2):
            before = len(alice.runs(rollback))
            if round_no == 1:
                world.tale.drift_arrives()  # the newest file in monitor.source is now drifted
            run_id = alice.trigger(monitor)
            world.finish(alice, monitor, run_id)
            assert alice.task_states(monitor, run_id)["signal"] == "success"
            runs = _wait_new_run(alice, rollback, before)
            world.finish(alice, rollback, runs["dag_run_id"])
            [handled] = alice.xcom(rollback, runs["dag_run_id"], "rollback")
            if round_no == 1:
                assert handled["outcome"] == "rolled-back" and handled["demoted"] == live
                assert f"drift found by {monitor} run " in handled["reason"]
                restored = handled["restored"]
            else:  # drift again in the same episode: ignored, production stays
                assert handled["outcome"] == "ignored"
    with closing(world.tale.registry()) as reg:
        assert reg.get(f"{model}@production").version == restored != live


def _wait_new_run(api: AirflowClient, dag_id: str, before: int, timeout: float = 120) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.runs(dag_id)
        if len(runs) > before:
            return runs[-1]
        time.sleep(1)
    pytest.fail(f"no new run of {dag_id} in {timeout:g}s")


def test_the_airflow_environment_runs_without_prefect() -> None:
    # Airflow's FastAPI pin excludes Prefect's: the DAGs above ran with no Prefect installed.
    import importlib.util

    assert importlib.util.find_spec("prefect") is None
    assert importlib.util.find_spec("airflow").origin.endswith("site-packages/airflow/__init__.py")
