"""The approval pause against a real Prefect server: approve, reject, untouched form, timeout, SoD."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from prefect.flow_runs import resume_flow_run

from flows.approval import paused_runs
from flows.retrain import retrain
from registry import Stage
from tests.fixtures.prefect import in_background, wait_for
from tests.flows.conftest import PIPELINE_ACTOR, with_config

MODEL = "credit-risk"


def _answer_when_paused(version: int, *answers: dict) -> object:
    """Resume the run paused on ``version`` once per answer (each after it pauses again)."""

    def act() -> None:
        for answer in answers:
            run = wait_for(lambda: paused_runs(MODEL, version), timeout=90, what="a paused retrain run")[0]
            resume_flow_run(run.id, run_input=answer)
            wait_for(
                lambda r=run: not any(p.id == r.id for p in paused_runs(MODEL, version)),
                timeout=30,
                what="the run to leave the pause",
            )

    return in_background(act)


def _actions(reg) -> list[str]:
    return [e.action for e in reg.audit_log(model=MODEL)]


def _events(names: set[str], since: datetime) -> set[str]:
    """Names among ``names`` of govflow events the server stored since ``since``."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    flt = EventFilter(
        event=EventNameFilter(prefix=["govflow.model."]), occurred=EventOccurredFilter(since=since)
    )
    with get_client(sync_client=True) as client:
        page = client.read_events(filter=flt, limit=50)
    return {e.event for e in page.events} & names


def test_approve_through_the_pause_form(pipeline) -> None:
    start = datetime.now(UTC)
    bot = _answer_when_paused(1, {"approve": True, "approver": "risk-officer", "reason": "reviewed"})
    result = retrain(str(pipeline.base))
    bot.join(5)
    assert not bot.errors
    assert (result["outcome"], result["approver"]) == ("promoted", "risk-officer")
    reg = pipeline.registry()
    v = reg.get(f"{MODEL}@production")
    assert v.version == 1 and v.registered_by == PIPELINE_ACTOR
    assert [a.actor for a in v.approvals] == ["risk-officer"]
    assert {e.gate for e in v.evidence} >= {"data", "performance.roc_auc", "fairness", "champion"}
    assert v.lineage.run.flow_run_id and v.lineage.run.flow_name == "retrain"
    assert v.drift_reference and v.input_schema
    manifest = json.loads((pipeline.folder / "releases" / "release.json").read_text())
    assert (manifest["version"], manifest["sha256"]) == (1, v.artifact.sha256)
    assert "model.deployed" in _actions(reg) and reg.verify_audit().ok
    expected = {f"govflow.model.{e}" for e in ("registered", "approval-requested", "promoted", "deployed")}
    assert wait_for(
        lambda: _events(expected, start) == expected, timeout=20, what="govflow events on the server"
    )


def test_reject_in_the_form_sends_back_to_development(pipeline) -> None:
    bot = _answer_when_paused(
        1, {"approve": False, "approver": "risk-officer", "reason": "fairness too close"}
    )
    result = retrain(str(pipeline.base))
    bot.join(5)
    assert result["outcome"] == "rejected"
    reg = pipeline.registry()
    v = reg.get_version(MODEL, 1)
    assert v.stage == Stage.DEVELOPMENT
    rejected = [e for e in reg.audit_log(model=MODEL) if e.action == "version.rejected"]
    assert rejected[0].actor == "risk-officer" and rejected[0].payload["reason"] == "fairness too close"


def test_untouched_form_rejects(pipeline) -> None:
    bot = _answer_when_paused(1, {})  # Resume without touching the form: the defaults apply
    result = retrain(str(pipeline.base))
    bot.join(5)
    assert result["outcome"] == "rejected"
    assert pipeline.registry().get_version(MODEL, 1).stage == Stage.DEVELOPMENT


def test_timeout_is_recorded_as_rejection(pipeline) -> None:
    config = with_config(pipeline.base, approval_timeout=3)
    result = retrain(str(config))
    assert result["outcome"] == "timed-out" and "timed out" in result["reason"]
    reg = pipeline.registry()
    rejected = [e for e in reg.audit_log(model=MODEL) if e.action == "version.rejected"]
    assert "timed out" in rejected[0].payload["reason"]
    assert reg.get_version(MODEL, 1).stage == Stage.DEVELOPMENT


def test_self_approval_is_refused_reasked_then_rejected(pipeline) -> None:
    self_approve = {"approve": True, "approver": PIPELINE_ACTOR, "reason": "my own model is fine"}
    bot = _answer_when_paused(1, self_approve, self_approve)
    result = retrain(str(pipeline.base))
    bot.join(5)
    assert not bot.errors
    assert result["outcome"] == "rejected" and "separation of duties" in result["reason"]
    reg = pipeline.registry()
    actions = _actions(reg)
    assert actions.count("custom.approval_refused") == 2
    assert "version.approved" not in actions and "version.promoted" not in actions
    assert reg.get_version(MODEL, 1).stage == Stage.DEVELOPMENT
