"""The approval form under `authenticated_approvals = true`, against a real Prefect server.

A typed name is a claim that does not count; the form says which command approves with an
identity; a pasted code or `govflow approve` does count; a reject from the form always counts.
"""

from __future__ import annotations

import os
import subprocess
import sys

from prefect.flow_runs import resume_flow_run

from flows.approval import paused_runs
from flows.retrain import retrain
from registry import Registry, Stage
from tests.fixtures.prefect import in_background, wait_for

MODEL = "credit-risk"


def _registry(pipeline) -> Registry:
    return Registry(url=pipeline.url, artifact_root=pipeline.artifacts)


def _strict(pipeline) -> None:
    reg = _registry(pipeline)
    reg.set_policy(reg.policy.model_copy(update={"authenticated_approvals": True}), actor="root")
    reg.close()


def _paused(version: int = 1):
    return wait_for(lambda: paused_runs(MODEL, version), timeout=90, what="a paused retrain run")[0]


def _left(run) -> None:
    wait_for(lambda: not any(p.id == run.id for p in paused_runs(MODEL, 1)), timeout=30, what="resume")


def _description(run) -> str:
    """The Markdown shown above the form of a paused run."""
    from prefect.client.orchestration import get_client
    from prefect.input.actions import read_flow_run_input
    from prefect.input.run_input import keyset_from_paused_state

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    return read_flow_run_input(keyset_from_paused_state(state)["description"], flow_run_id=run.id)


def test_typed_name_is_a_claim_and_a_code_counts(pipeline) -> None:
    _strict(pipeline)
    seen: list[str] = []

    def act() -> None:
        run = _paused()
        seen.append(_description(run))
        resume_flow_run(run.id, run_input={"approve": True, "approver": "risk-officer", "reason": "typed"})
        _left(run)
        run = _paused()
        seen.append(_description(run))
        reg = _registry(pipeline)
        code = reg.approval_code(MODEL, 1, actor="carol")
        reg.close()
        resume_flow_run(run.id, run_input={"approve": True, "code": code, "reason": "with a code"})

    bot = in_background(act)
    result = retrain(str(pipeline.base))
    bot.join(5)
    assert not bot.errors, bot.errors
    assert (result["outcome"], result["approver"]) == ("promoted", "carol")
    first, second = seen
    assert "does not count" in first and f"`govflow approve {MODEL} 1`" in first
    assert f"`govflow approve {MODEL} 1 --code`" in first
    assert "recorded as a claim and does not count" in second
    reg = _registry(pipeline)
    v = reg.get_version(MODEL, 1)
    assert v.stage == Stage.PRODUCTION
    assert [(a.actor, a.channel, a.claimed_by) for a in v.approvals] == [
        ("risk-officer", "prefect-form", "risk-officer"),
        ("carol", "prefect-form", None),
    ]
    assert reg.verify_audit().ok


def test_reject_from_the_form_counts(pipeline) -> None:
    _strict(pipeline)

    def act() -> None:
        run = _paused()
        resume_flow_run(run.id, run_input={"approve": False, "approver": "risk-officer", "reason": "no"})

    bot = in_background(act)
    result = retrain(str(pipeline.base))
    bot.join(5)
    assert (result["outcome"], result["approver"]) == ("rejected", "risk-officer")
    (a,) = _registry(pipeline).get_version(MODEL, 1).approvals
    assert (a.decision.value, a.claimed_by, a.channel) == ("reject", "risk-officer", "prefect-form")


def test_cli_approval_counts_and_resumes_the_run(pipeline) -> None:
    _strict(pipeline)
    env = {**os.environ, "GOVFLOW_ACTOR": "bob"}

    def act() -> None:
        _paused()
        proc = subprocess.run(
            [sys.executable, "-m", "govflow", "approve", MODEL, "1", "--reason", "reviewed"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "resumed paused flow run" in proc.stdout

    bot = in_background(act)
    result = retrain(str(pipeline.base))
    bot.join(5)
    assert not bot.errors, bot.errors
    assert (result["outcome"], result["approver"]) == ("promoted", "bob")
    (a,) = _registry(pipeline).get_version(MODEL, 1).approvals
    assert (a.actor, a.channel, a.claimed_by) == ("bob", "cli", None)


def test_a_policy_set_while_the_run_waits_changes_the_next_form(pipeline) -> None:
    seen: list[str] = []

    def act() -> None:
        run = _paused()
        seen.append(_description(run))
        _strict(pipeline)  # an admin tightens the policy while the run waits
        resume_flow_run(run.id, run_input={"approve": True, "approver": "risk-officer", "reason": "typed"})
        _left(run)
        run = _paused()
        seen.append(_description(run))
        resume_flow_run(run.id, run_input={"approve": False, "approver": "risk-officer", "reason": "later"})

    bot = in_background(act)
    result = retrain(str(pipeline.base))
    bot.join(5)
    assert not bot.errors, bot.errors
    assert result["outcome"] == "rejected"
    assert "does not count" not in seen[0] and "does not count toward the approvals" in seen[1]
    assert "version.promoted" not in [e.action for e in _registry(pipeline).audit_log(model=MODEL)]
