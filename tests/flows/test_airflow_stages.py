"""The Airflow DAGs' stages, called as their tasks call them, without Airflow running.

How the registry takes an Airflow answer (who, which channel, what is refused) and the rollback's
checks of an asset event, attacked the way an insider would. The same stages under a real
Airflow are in tests/airflow/.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from govflow.airflow import decision, drift, stages, story
from registry import identity
from registry.entities import Decision
from registry.errors import InvalidInput
from registry.stages import Stage


@pytest.fixture(scope="module")
def tale(tmp_path_factory: pytest.TempPathFactory) -> story.Story:
    return story.prepare(tmp_path_factory.mktemp("airflow-stages"))


@pytest.fixture(autouse=True)
def _scratch(tale: story.Story, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in tale.env().items():
        monkeypatch.setenv(name, value)


def _build(tale: story.Story, key: str, run_id: str, user: str | None = "alice") -> dict[str, Any]:
    """validate → train → evaluate → register → gates, as the DAG's tasks run them."""
    path = str(tale.configs[key])
    run = stages.RunInfo(dag_id=f"govflow_retrain_{key}", run_id=run_id, triggered_by=user)
    validated = stages.validate(path)
    trained = stages.train(path, run, validated)
    evaluated = stages.evaluate(path, validated, trained)
    registered = stages.register(path, run, validated, trained, evaluated)
    gates = stages.gates(path, run, validated, trained, registered)
    # XCom carries JSON: everything handed on must survive it unchanged.
    for handed in (validated, trained, evaluated, registered, gates):
        assert json.loads(json.dumps(handed)) == handed
    return {"validated": validated, "trained": trained, "registered": registered, "gates": gates, "run": run}


def _answer(option: str, user: str | None, timedout: bool = False) -> dict[str, Any]:
    who = None if user is None else {"id": user, "name": user}
    return {"chosen_options": [option], "responded_by_user": who, "timedout": timedout, "params_input": {}}


def test_approval_by_another_user_promotes_with_that_user_on_the_airflow_channel(tale: story.Story) -> None:
    built = _build(tale, "main", "manual__approve")
    reg_v = built["registered"]
    assert reg_v["registered_by"] == "alice"  # the user who triggered the run
    asked = decision.request(str(tale.configs["main"]), "manual__approve", reg_v)
    assert asked["timeout"] == 86400  # the policy's, the config setting none
    assert "### Gates" in asked["body"] and "### Lineage" in asked["body"]
    out = decision.promote(str(tale.configs["main"]), "manual__approve", reg_v, _answer("Approve", "bob"))
    assert out["outcome"] == "promoted" and out["approver"] == "bob"
    with closing(tale.registry()) as reg:
        v = reg.get_version(reg_v["model"], reg_v["version"])
        assert v.stage == Stage.PRODUCTION
        approval = [a for a in v.approvals if a.decision == Decision.APPROVE][-1]
        assert (approval.actor, approval.channel) == ("bob", "airflow-hitl")
        audited = [e for e in reg.audit_log(model=v.model) if e.action == "version.approved"][-1]
        assert audited.actor == "bob" and audited.payload["channel"] == "airflow-hitl"
        assert v.lineage.run.flow_run_id == "manual__approve"
        assert v.lineage.run.flow_name == "airflow:govflow_retrain_main"
    assert decision.deploy(str(tale.configs["main"]), out)["version"] == reg_v["version"]


def test_a_retried_promote_task_goes_on_from_the_approval_it_recorded(tale: story.Story) -> None:
    path = str(tale.configs["strict"]).replace("strict", "timeout")
    reg_v = _build(tale, "timeout", "manual__retried")["registered"]
    with closing(tale.registry()) as reg, identity.acting(channel="airflow-hitl"):
        # The first try recorded bob's approval, then died before promoting.
        reg.approve(reg_v["model"], reg_v["version"], actor="bob", reason="approved in Airflow run manual__retried")
    out = decision.promote(path, "manual__retried", reg_v, _answer("Approve", "bob"))
    assert out["outcome"] == "promoted" and out["approver"] == "bob"
    # The same approval answering another run is not taken for this one's: bob may not decide twice.
    again = _build(tale, "timeout", "manual__other")["registered"]
    with closing(tale.registry()) as reg, identity.acting(channel="airflow-hitl"):
        reg.approve(again["model"], again["version"], actor="bob", reason="approved in Airflow run manual__x")
    out = decision.promote(path, "manual__other", again, _answer("Approve", "bob"))
    assert out["outcome"] == "rejected" and "already decided" in out["reason"]


@pytest.mark.parametrize("spoof", ["alice", "ALICE", "ａｌｉｃｅ"])
def test_the_registrant_approving_is_refused_and_rejected_however_spelled(tale: story.Story, spoof: str) -> None:
    built = _build(tale, "main", f"manual__self_{len(spoof)}_{spoof.isascii()}_{spoof.isupper()}")
    reg_v = built["registered"]
    out = decision.promote(str(tale.configs["main"]), "r", reg_v, _answer("Approve", spoof))
    assert out["outcome"] == "rejected"
    assert "separation of duties" in out["reason"]
    with closing(tale.registry()) as reg:
        v = reg.get_version(reg_v["model"], reg_v["version"])
        assert v.stage == Stage.DEVELOPMENT
        assert not [a for a in v.approvals if a.decision == Decision.APPROVE]


@pytest.mark.parametrize(
    ("answer", "outcome", "decider"),
    [
        (_answer("Reject", "bob"), "rejected", "bob"),
        (_answer("Reject", None, timedout=True), "timed-out", "alice"),
        # An Approve with no user (an auth manager that names nobody) is no approval.
        (_answer("Approve", None), "rejected", "alice"),
        (_answer("Approve", "  "), "rejected", "alice"),
        # A timeout that somehow carries a user and Approve still rejects.
        (_answer("Approve", "bob", timedout=True), "timed-out", "alice"),
        (_answer("Maybe", "bob"), "rejected", "bob"),
    ],
)
def test_every_answer_but_an_identified_approve_rejects(
    tale: story.Story, answer: dict[str, Any], outcome: str, decider: str
) -> None:
    built = _build(tale, "main", f"manual__{outcome}_{id(answer)}")
    reg_v = built["registered"]
    out = decision.promote(str(tale.configs["main"]), "r", reg_v, answer)
    assert out["outcome"] == outcome
    with closing(tale.registry()) as reg:
        v = reg.get_version(reg_v["model"], reg_v["version"])
        assert v.stage == Stage.DEVELOPMENT
        last = v.approvals[-1]
        assert last.decision == Decision.REJECT and last.actor == decider and last.channel == "airflow-hitl"


def test_failing_gates_leave_the_version_in_development(tale: story.Story) -> None:
    built = _build(tale, "strict", "manual__strict")
    assert built["gates"]["passed"] is False
    assert "performance.roc_auc" in built["gates"]["failed"]
    with closing(tale.registry()) as reg:
        v = reg.get_version(built["registered"]["model"], built["registered"]["version"])
        assert v.stage == Stage.DEVELOPMENT and not v.approvals


def test_a_rerun_register_task_finds_its_version_instead_of_registering_twice(tale: story.Story) -> None:
    built = _build(tale, "strict", "manual__retry")
    path = str(tale.configs["strict"])
    again = stages.register(path, built["run"], built["validated"], built["trained"], {"metrics": {}})
    assert again == built["registered"]


def test_a_model_file_changed_between_tasks_is_refused(tale: story.Story) -> None:
    path = str(tale.configs["strict"])
    run = stages.RunInfo("govflow_retrain_strict", "manual__tamper", "alice")
    validated = stages.validate(path)
    trained = stages.train(path, run, validated)
    model = Path(trained["path"])
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(InvalidInput, match="model: .* changed since the train stage"):
        stages.evaluate(path, validated, trained)


def test_data_changed_after_validation_is_refused(tale: story.Story) -> None:
    path = str(tale.configs["strict"])
    validated = stages.validate(path)
    forged = {**validated, "digests": {k: "0" * 64 for k in validated["digests"]}}
    with pytest.raises(InvalidInput, match="data: .*changed since the validate stage"):
        stages.train(path, stages.RunInfo("d", "manual__data"), forged)


def test_drift_rolls_back_once_and_only_on_the_registrys_own_evidence(tale: story.Story) -> None:
    path = str(tale.configs["timeout"])
    first = _build(tale, "timeout", "manual__drift1")["registered"]
    decision.promote(path, "r", first, _answer("Approve", "bob"))
    second = _build(tale, "timeout", "manual__drift2")["registered"]
    decision.promote(path, "r", second, _answer("Approve", "carol"))
    model, live = second["model"], second["version"]
    forged = {"model": model, "version": live, "reason": "forged"}
    # No monitor has found drift: an asset event alone moves nothing.
    assert drift.rollback(path, [forged])[0]["outcome"] == "ignored"
    with pytest.raises(InvalidInput, match="model: the drift event names 'credit-risk'"):
        drift.rollback(path, [{**forged, "model": "credit-risk"}])
    with pytest.raises(InvalidInput, match=f"version: '{live}' is not an integer"):
        drift.rollback(path, [{**forged, "version": str(live)}])
    found = drift.monitor(path, str(tale.drifted))
    assert found["verdict"] == "act" and found["version"] == live
    extra = drift.event_extra(found, "manual__monitor", "dave")
    assert "monitor run manual__monitor, triggered by dave, data " in extra["reason"]
    done = drift.rollback(path, [extra, extra])
    assert [d["outcome"] for d in done] == ["rolled-back", "ignored"]  # once per episode
    assert done[0]["restored"] == first["version"] and done[0]["deployed"]["version"] == first["version"]
    with closing(tale.registry()) as reg:
        assert reg.get(f"{model}@production").version == first["version"]
        rolled = [e for e in reg.audit_log(model=model) if e.action == "model.rolled_back"][-1]
        assert "triggered by dave" in rolled.payload["reason"]
