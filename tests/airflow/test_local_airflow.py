"""LocalAirflow and AirflowClient against real Airflow processes: a human approval answered over REST."""

import textwrap
import time

import pytest

from govflow.airflow.local import LocalAirflow
from govflow.airflow.rest import AirflowError

DAGS = textwrap.dedent(
    """
    from datetime import datetime, timedelta

    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk import Asset, dag, task


    def approval_dag(dag_id, response_timeout=None, defaults="Reject"):
        @dag(dag_id=dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
        def build():
            approve = ApprovalOperator(
                task_id="approve",
                subject="Ship it?",
                defaults=[defaults],
                response_timeout=response_timeout,
            )

            @task
            def after(ti=None, dag_run=None):
                print("triggering_user_name:", dag_run.triggering_user_name)
                return {
                    "approval": ti.xcom_pull(task_ids="approve"),
                    "triggering_user_name": dag_run.triggering_user_name,
                }

            approve >> after()

        return build()


    approval_dag("hitl_probe")
    approval_dag("hitl_timeout", response_timeout=timedelta(seconds=5))
    approval_dag("hitl_timeout_approve", response_timeout=timedelta(seconds=5), defaults="Approve")


    @dag(dag_id="trivial", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
    def trivial():
        @task
        def one():
            return 1

        one()


    trivial()

    signal = Asset("govflow://probe/signal")


    @dag(dag_id="asset_producer", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
    def asset_producer():
        @task(outlets=[signal])
        def emit():
            return "emitted"

        emit()


    @dag(dag_id="asset_consumer", schedule=[signal], start_date=datetime(2024, 1, 1), catchup=False)
    def asset_consumer():
        @task
        def got():
            return "got"

        got()


    asset_producer()
    asset_consumer()
    """
)

DAG_IDS = (
    "hitl_probe",
    "hitl_timeout",
    "hitl_timeout_approve",
    "trivial",
    "asset_producer",
    "asset_consumer",
)
USERS = {"alice": "user", "bob": "user", "vera": "viewer"}
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    dags = tmp_path_factory.mktemp("dags")
    (dags / "approvals.py").write_text(DAGS)
    home = tmp_path_factory.mktemp("airflow-home")
    started = time.monotonic()
    with LocalAirflow(home, dags, USERS) as af:
        TIMINGS["start"] = time.monotonic() - started
        for dag_id in DAG_IDS:
            af.wait_dag(dag_id, timeout=90)
        TIMINGS["start+parse"] = time.monotonic() - started
        yield af
    print("\nLocalAirflow timings (s):", {k: round(v, 1) for k, v in TIMINGS.items()})


def _wait_request(af, api, dag_id, run_id):
    """The run's one HITL request, once the approval task has parked waiting for input."""
    detail = af.wait_hitl(api, dag_id, run_id, "approve")
    assert [d["task_instance"]["task_id"] for d in api.hitl_details(dag_id, run_id)] == ["approve"]
    return detail


def _explain(api, dag_id, run_id):
    """The run's task states and logs, for an assertion message."""
    states = api.task_states(dag_id, run_id)
    lines = [f"run {api.run(dag_id, run_id)['state']}, task states {states}"]
    for task_id in states:
        try:
            lines.append(f"--- {task_id}\n{api.task_log(dag_id, run_id, task_id)}")
        except AirflowError as exc:
            lines.append(f"--- {task_id}: {exc}")
    return "\n".join(lines)


def test_trivial_run_succeeds(airflow):
    with airflow.client("alice") as api:
        started = time.monotonic()
        run_id = api.trigger("trivial")
        state = api.wait_run("trivial", run_id, timeout=120)
        TIMINGS["trivial run"] = time.monotonic() - started
        assert state == "success", _explain(api, "trivial", run_id)
        assert api.xcom("trivial", run_id, "one") == 1


def test_asset_event_starts_the_consumer(airflow):
    with airflow.client("alice") as alice:
        run_id = alice.trigger("asset_producer")
        assert alice.wait_run("asset_producer", run_id) == "success", _explain(
            alice, "asset_producer", run_id
        )
        (event,) = alice.asset_events(source_dag_id="asset_producer", source_run_id=run_id)
        assert event["uri"] == "govflow://probe/signal"
        assert event["source_task_id"] == "emit"
        deadline = time.monotonic() + 90
        consumed = []
        while not consumed and time.monotonic() < deadline:
            consumed = [r for r in alice.runs("asset_consumer") if r["run_type"] == "asset_triggered"]
            time.sleep(0.5)
        assert len(consumed) == 1, alice.runs("asset_consumer")
        assert alice.wait_run("asset_consumer", consumed[0]["dag_run_id"]) == "success"


def test_approve_by_another_user_over_rest(airflow):
    with airflow.client("alice") as alice, airflow.client("bob") as bob:
        run_id = alice.trigger("hitl_probe", conf={"why": "test"})
        detail = _wait_request(airflow, alice, "hitl_probe", run_id)
        assert detail["options"] == ["Approve", "Reject"]
        assert detail["defaults"] == ["Reject"]
        assert detail["response_received"] is False

        answer = bob.respond("hitl_probe", run_id, "approve", ["Approve"])
        assert answer.status_code == 200, answer.text
        assert answer.json()["responded_by"] == {"id": "bob", "name": "bob"}

        assert alice.wait_run("hitl_probe", run_id) == "success", _explain(alice, "hitl_probe", run_id)
        result = alice.xcom("hitl_probe", run_id, "approve")
        assert result["chosen_options"] == ["Approve"]
        assert result["responded_by_user"] == {"id": "bob", "name": "bob"}
        after = alice.xcom("hitl_probe", run_id, "after")
        assert after["approval"]["responded_by_user"] == {"id": "bob", "name": "bob"}
        assert after["triggering_user_name"] == "alice"
        print("\napprove XCom:", result, "\nafter XCom:", after)

        # the request is answered once: a second answer is refused
        again = alice.respond("hitl_probe", run_id, "approve", ["Reject"])
        assert again.status_code == 409, again.text


def test_reject_skips_downstream(airflow):
    with airflow.client("alice") as alice:
        run_id = alice.trigger("hitl_probe")
        _wait_request(airflow, alice, "hitl_probe", run_id)
        answer = alice.respond("hitl_probe", run_id, "approve", ["Reject"])
        assert answer.status_code == 200, answer.text
        assert alice.wait_run("hitl_probe", run_id) == "success", _explain(alice, "hitl_probe", run_id)
        assert alice.task_states("hitl_probe", run_id) == {"approve": "success", "after": "skipped"}
        (detail,) = alice.hitl_details("hitl_probe", run_id)
        assert detail["chosen_options"] == ["Reject"]
        assert detail["responded_by_user"] == {"id": "alice", "name": "alice"}
        # skipping downstream ends the task before its result is pushed: the decision lives in
        # the HITL detail only
        with pytest.raises(AirflowError) as missing:
            alice.xcom("hitl_probe", run_id, "approve")
        assert missing.value.status == 404


def test_response_timeout_writes_defaults(airflow):
    with airflow.client("alice") as alice:
        run_id = alice.trigger("hitl_timeout")
        _wait_request(airflow, alice, "hitl_timeout", run_id)
        # nobody answers: the scheduler's sweep applies the defaults after 5 s
        assert alice.wait_run("hitl_timeout", run_id, timeout=120) == "success", _explain(
            alice, "hitl_timeout", run_id
        )
        (detail,) = alice.hitl_details("hitl_timeout", run_id)
        assert detail["chosen_options"] == ["Reject"]
        assert detail["responded_by_user"] is None
        assert detail["response_received"] is True
        assert alice.task_states("hitl_timeout", run_id) == {"approve": "success", "after": "skipped"}


def test_response_timeout_with_approve_default_runs_downstream(airflow):
    with airflow.client("alice") as alice:
        run_id = alice.trigger("hitl_timeout_approve")
        _wait_request(airflow, alice, "hitl_timeout_approve", run_id)
        assert alice.wait_run("hitl_timeout_approve", run_id, timeout=120) == "success", _explain(
            alice, "hitl_timeout_approve", run_id
        )
        result = alice.xcom("hitl_timeout_approve", run_id, "approve")
        assert result["chosen_options"] == ["Approve"]
        assert result["responded_by_user"] is None
        assert alice.task_states("hitl_timeout_approve", run_id)["after"] == "success"
        print("\ntimed-out approve XCom:", result)


def test_viewer_cannot_respond(airflow):
    with airflow.client("alice") as alice, airflow.client("vera") as vera:
        run_id = alice.trigger("hitl_probe")
        _wait_request(airflow, alice, "hitl_probe", run_id)
        refused = vera.respond("hitl_probe", run_id, "approve", ["Approve"])
        assert refused.status_code == 403, refused.text
        # the viewer can still read the request, and it stays unanswered
        (detail,) = vera.hitl_details("hitl_probe", run_id)
        assert detail["response_received"] is False
        assert alice.respond("hitl_probe", run_id, "approve", ["Reject"]).status_code == 200
        assert alice.wait_run("hitl_probe", run_id) == "success"
