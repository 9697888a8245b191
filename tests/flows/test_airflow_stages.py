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
import yaml

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


def _decide(tale: story.Story, key: str, built: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The approval task records the answer, then the promote task acts on the registry."""
    path, run = str(tale.configs[key]), built["run"]
    recorded = decision.record(path, run, built["registered"], answer)
    promoted = decision.promote(path, run, built["registered"])
    final = decision.outcome(path, run, built["registered"])  # what the DAG's last task reports
    if recorded["outcome"] != "approved":  # decided by the answer: promote finds nothing to do
        assert promoted["outcome"] in (recorded["outcome"], "rejected")
        promoted = recorded
    assert final["outcome"] == promoted["outcome"]
    if final["outcome"] == "promoted":
        assert final["approver"] == promoted["approver"]
    assert Path(final["card"]).read_text().startswith(f"# Model card: {final['model']} v{final['version']}")
    return promoted


def _answer(option: str, user: str | None, timedout: bool = False) -> dict[str, Any]:
    who = None if user is None else {"id": user, "name": user}
    return {"chosen_options": [option], "responded_by_user": who, "timedout": timedout}


def _version(tale: story.Story, out: dict[str, Any]) -> Any:
    with closing(tale.registry()) as reg:
        return reg.get_version(out["model"], out["version"])


def test_approval_by_another_user_promotes_with_that_user_on_the_airflow_channel(tale: story.Story) -> None:
    built = _build(tale, "main", "manual__approve")
    reg_v = built["registered"]
    assert reg_v["registered_by"] == "alice"  # the user who triggered the run
    asked = decision.request(str(tale.configs["main"]), built["run"], reg_v)
    assert asked["timeout"] == 86400  # the policy's, the config setting none
    assert "### Gates" in asked["body"] and "### Lineage" in asked["body"]
    out = _decide(tale, "main", built, _answer("Approve", "bob"))
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
        # The registry's deadline trails Airflow's, so reconcile never settles first.
        wait = [e for e in reg.audit_log(model=v.model) if e.action == "run.waiting"][-1]
        assert wait.payload["orchestrator"] == "airflow" and wait.payload["timeout"] == 86400 + decision.GRACE
    assert decision.deploy(str(tale.configs["main"]), out)["version"] == reg_v["version"]


def test_promote_acts_only_on_an_approval_recorded_for_its_own_run(tale: story.Story) -> None:
    # The approval task marked done by hand, with a made-up answer handed on: nothing recorded.
    built = _build(tale, "main", "manual__forged")
    out = decision.promote(str(tale.configs["main"]), built["run"], built["registered"])
    assert out["outcome"] == "rejected" and "no approval recorded in the registry" in out["reason"]
    assert _version(tale, out).stage == Stage.DEVELOPMENT
    # bob's approval of this version, given for another run, does not count for this one.
    other = _build(tale, "main", "manual__other_run")
    with closing(tale.registry()) as reg, identity.acting(channel="airflow-hitl"):
        v = other["registered"]
        reg.approve(v["model"], v["version"], actor="bob", reason="approved in Airflow run manual__elsewhere")
    out = decision.promote(str(tale.configs["main"]), other["run"], other["registered"])
    assert out["outcome"] == "rejected"
    # A version handed on from another run is refused outright.
    third = _build(tale, "main", "manual__third")
    with pytest.raises(InvalidInput, match="was not registered by Airflow run manual__third"):
        decision.promote(str(tale.configs["main"]), third["run"], built["registered"])


def test_a_retried_task_goes_on_from_the_approval_it_recorded(tale: story.Story) -> None:
    built = _build(tale, "timeout", "manual__retried")
    path = str(tale.configs["timeout"])
    assert decision.record(path, built["run"], built["registered"], _answer("Approve", "bob"))["outcome"] == "approved"
    # The approval task retried: the same answer again is not a second decision by bob.
    assert decision.record(path, built["run"], built["registered"], _answer("Approve", "bob"))["outcome"] == "approved"
    assert decision.promote(path, built["run"], built["registered"])["outcome"] == "promoted"


@pytest.mark.parametrize("spoof", ["alice", "ALICE", "ａｌｉｃｅ"])
def test_the_registrant_approving_is_refused_and_rejected_however_spelled(tale: story.Story, spoof: str) -> None:
    built = _build(tale, "main", f"manual__self_{len(spoof)}_{spoof.isascii()}_{spoof.isupper()}")
    out = _decide(tale, "main", built, _answer("Approve", spoof))
    assert out["outcome"] == "rejected"
    v = _version(tale, out)
    assert v.stage == Stage.DEVELOPMENT
    assert not [a for a in v.approvals if a.decision == Decision.APPROVE]
    assert "separation of duties" in v.approvals[-1].reason


@pytest.mark.parametrize(
    ("answer", "outcome", "decider"),
    [
        (_answer("Reject", "bob"), "rejected", "bob"),
        (_answer("Reject", None, timedout=True), "timed-out", "alice"),
        # An Approve with no user (an auth manager that names nobody) is no approval.
        (_answer("Approve", None), "rejected", "alice"),
        (_answer("Approve", "  "), "rejected", "alice"),
        (_answer("Maybe", "bob"), "rejected", "bob"),
    ],
)
def test_every_answer_but_an_identified_approve_rejects(
    tale: story.Story, answer: dict[str, Any], outcome: str, decider: str
) -> None:
    built = _build(tale, "main", f"manual__{outcome}_{id(answer)}")
    out = _decide(tale, "main", built, answer)
    assert out["outcome"] == outcome
    v = _version(tale, out)
    assert v.stage == Stage.DEVELOPMENT
    last = v.approvals[-1]
    assert last.decision == Decision.REJECT and last.actor == decider and last.channel == "airflow-hitl"


def test_a_timeout_promotes_when_the_registry_already_holds_the_approvals(tale: story.Story) -> None:
    built = _build(tale, "timeout", "manual__held")
    v = built["registered"]
    with closing(tale.registry()) as reg, identity.acting(channel="cli"):
        reg.approve(v["model"], v["version"], actor="carol", reason="approved with govflow approve")
    out = _decide(tale, "timeout", built, _answer("Reject", None, timedout=True))
    assert out["outcome"] == "promoted" and out["approver"] == "carol"


def test_failing_gates_leave_the_version_in_development(tale: story.Story) -> None:
    built = _build(tale, "strict", "manual__strict")
    assert built["gates"]["passed"] is False
    assert "performance.roc_auc" in built["gates"]["failed"]
    v = _version(tale, built["registered"])
    assert v.stage == Stage.DEVELOPMENT and not v.approvals


def test_gates_trust_nothing_handed_on(tale: story.Story, tmp_path: Path) -> None:
    # A contract the data cannot meet, and a validate result edited to say it passed.
    doc = yaml.safe_load(tale.configs["main"].read_text())
    doc["model_name"], doc["contract"]["min_rows"] = "credit-risk-forged", 10**9
    path = tale.folder / "credit-risk-forged.yaml"
    path.write_text(yaml.safe_dump(doc))
    validated = stages.validate(str(path))
    assert validated["passed"] is False
    forged = {**validated, "passed": True, "gate": {**validated["gate"], "passed": True}}
    run = stages.RunInfo("govflow_retrain_forged", "manual__forged_gate", "alice")
    trained = stages.train(str(path), run, forged)
    registered = stages.register(str(path), run, forged, trained, stages.evaluate(str(path), forged, trained))
    gated = stages.gates(str(path), run, forged, trained, registered)
    assert gated["passed"] is False and "data" in gated["failed"]
    assert _version(tale, registered).stage == Stage.DEVELOPMENT


def test_a_rejected_version_gated_again_is_not_staged_again(tale: story.Story) -> None:
    built = _build(tale, "main", "manual__regate")
    v = built["registered"]
    assert _version(tale, v).stage == Stage.STAGING
    with closing(tale.registry()) as reg:
        reg.reject(v["model"], v["version"], reason="not this one", actor="bob")
    path = str(tale.configs["main"])
    # The gates task cleared and run again: the evidence stands and the review stays closed.
    again = stages.gates(path, built["run"], built["validated"], built["trained"], v)
    assert again["passed"] is True
    assert _version(tale, v).stage == Stage.DEVELOPMENT


def test_run_ids_alike_for_64_characters_register_two_versions(tale: story.Story) -> None:
    stem = "manual__" + "x" * 70
    firsts = [_build(tale, "strict", stem + end)["registered"]["version"] for end in ("a", "b")]
    assert firsts[0] != firsts[1]


def test_a_rerun_register_task_finds_its_version_instead_of_registering_twice(tale: story.Story) -> None:
    built = _build(tale, "strict", "manual__retry")
    path = str(tale.configs["strict"])
    again = stages.register(path, built["run"], built["validated"], built["trained"], {"metrics": {}})
    assert again == built["registered"]
    # The same run id triggered by someone else is another run.
    other = stages.RunInfo(built["run"].dag_id, built["run"].run_id, "mallory")
    assert stages.register(path, other, built["validated"], built["trained"], {"metrics": {}}) != again


def test_a_model_file_changed_between_tasks_is_refused(tale: story.Story) -> None:
    path = str(tale.configs["strict"])
    run = stages.RunInfo("govflow_retrain_strict", "manual__tamper", "alice")
    validated = stages.validate(path)
    trained = stages.train(path, run, validated)
    model = Path(trained["path"])
    assert model.stat().st_mode & 0o077 == 0  # the scratch model is the owner's only
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(InvalidInput, match="model: .* changed since the train stage"):
        stages.evaluate(path, validated, trained)


def test_data_or_config_changed_after_validation_is_refused(tale: story.Story) -> None:
    path = str(tale.configs["strict"])
    validated = stages.validate(path)
    forged = {**validated, "digests": {k: "0" * 64 for k in validated["digests"]}}
    with pytest.raises(InvalidInput, match="data: .*changed since the validate stage"):
        stages.train(path, stages.RunInfo("d", "manual__data"), forged)
    with pytest.raises(InvalidInput, match="config: .*changed since the validate stage"):
        stages.train(path, stages.RunInfo("d", "manual__cfg"), {**validated, "config_sha256": "0" * 64})


def test_drift_rolls_back_once_and_only_on_the_registrys_own_evidence(tale: story.Story) -> None:
    path = str(tale.configs["timeout"])
    monitor = "govflow_monitor_credit_risk_timeout"
    first = _build(tale, "timeout", "manual__drift1")
    _decide(tale, "timeout", first, _answer("Approve", "bob"))
    second = _build(tale, "timeout", "manual__drift2")
    _decide(tale, "timeout", second, _answer("Approve", "carol"))
    model, live = second["registered"]["model"], second["registered"]["version"]

    def event(extra: dict[str, Any], source: str | None = monitor) -> dict[str, Any]:
        return {"extra": extra, "source_dag_id": source, "source_run_id": "manual__m"}

    forged = {"model": model, "version": live}
    # No monitor has found drift: an event alone moves nothing, nor one posted by hand.
    assert drift.rollback(path, [event(forged)], monitor)[0]["outcome"] == "ignored"
    assert drift.rollback(path, [event(forged, None)], monitor)[0]["outcome"] == "ignored"
    with pytest.raises(InvalidInput, match="model: the drift event names 'credit-risk'"):
        drift.rollback(path, [event({**forged, "model": "credit-risk"})], monitor)
    with pytest.raises(InvalidInput, match=f"version: '{live}' is not an integer"):
        drift.rollback(path, [event({**forged, "version": str(live)})], monitor)
    found = drift.monitor(path, str(tale.drifted))
    assert found["verdict"] == "act" and found["version"] == live
    extra = drift.event_extra(found)
    # Drift found, but an event posted by hand still does not act; the monitor's does, once.
    assert drift.rollback(path, [event(extra, "someone_elses_dag")], monitor)[0]["outcome"] == "ignored"
    bad = event({**extra, "version": "x"})
    with pytest.raises(InvalidInput, match=r"drift events refused: version: 'x'.*\(handled: rolled-back"):
        drift.rollback(path, [bad, event(extra)], monitor)  # a bad event does not block a good one
    again = drift.rollback(path, [event(extra)], monitor)
    assert again[0]["outcome"] == "ignored"  # once per episode
    with closing(tale.registry()) as reg:
        assert reg.get(f"{model}@production").version == first["registered"]["version"]
        rolled = [e for e in reg.audit_log(model=model) if e.action == "model.rolled_back"][-1]
        assert f"drift found by {monitor} run manual__m" in rolled.payload["reason"]


def test_a_policy_wanting_two_approvers_keeps_the_version_staged_and_names_who_may_approve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = story.prepare(tmp_path)
    for name, value in own.env().items():
        monkeypatch.setenv(name, value)
    with closing(own.registry()) as reg:
        rules = reg.policy.model_dump(mode="json")
        rules["stages"]["production"] = {**rules["stages"]["production"], "approvals": 2, "approvers": ["bob", "carol"]}
        reg.set_policy(rules, reason="two approvers from the risk team", actor="admin")
    first = _build(own, "main", "manual__two")
    out = _decide(own, "main", first, _answer("Approve", "bob"))
    assert out["outcome"] == "approval-recorded" and "approval" in out["reason"]
    assert _version(own, out).stage == Stage.STAGING
    # dave is not on the policy's list: refused by the registry, and the version is rejected.
    second = _build(own, "main", "manual__dave")
    out = _decide(own, "main", second, _answer("Approve", "dave"))
    assert out["outcome"] == "rejected" and "dave" in _version(own, out).approvals[-1].reason
