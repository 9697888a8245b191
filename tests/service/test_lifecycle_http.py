"""The governed path end to end over HTTP, each step by the role that owns it."""

from __future__ import annotations

from typing import Any

import pytest

from registry import errors, identity


def test_failed_gate_blocks_until_an_audited_waiver(team: dict[str, Any], unchanged: Any) -> None:
    bob, alice, olga = team["bob"], team["alice"], team["olga"]
    bob.add_evidence("churn", 1, gate="fairness", passed=False, value=0.31, threshold=0.2)
    alice.approve("churn", 1, reason="looks fine otherwise")
    with unchanged(), pytest.raises(errors.GateFailed):
        olga.transition("churn", 1, "production")
    with unchanged(), pytest.raises(errors.Forbidden):
        bob.waive("churn", 1, "fairness", reason="I say so")
    waiver = alice.waive("churn", 1, "fairness", reason="disparity explained by the eval sample")
    assert waiver.gate == "fairness" and waiver.actor == "alice"
    mv = olga.transition("churn", 1, "production")
    assert mv.stage.value == "production" and [w.gate for w in mv.waivers] == ["fairness"]
    assert team["rita"].resolve("churn@production").version == 1
    assert team["rita"].verify_audit().ok


def test_form_approval_does_not_count_but_a_code_does(team: dict[str, Any], unchanged: Any) -> None:
    bob, alice, olga = team["bob"], team["alice"], team["olga"]
    with identity.acting(channel="prefect-form"):
        typed = bob.approve("churn", 1, claimed_by="carol")
    assert typed.claimed_by == "carol" and typed.channel == "prefect-form"
    with unchanged(), pytest.raises(errors.ApprovalRequired):
        olga.transition("churn", 1, "production")
    code = alice.approval_code("churn", 1)
    with identity.acting(channel="prefect-form"):
        counted = bob.approve("churn", 1, code=code)
    assert counted.actor == "alice"
    with identity.acting(channel="prefect-form"), pytest.raises(errors.GovflowError):
        bob.approve("churn", 1, code=code)  # single use
    assert olga.transition("churn", 1, "production").stage.value == "production"


def test_form_reject_counts(team: dict[str, Any]) -> None:
    with identity.acting(channel="prefect-form"):
        decision = team["bob"].reject("churn", 1, reason="typed no", claimed_by="alice")
    assert decision.decision.value == "reject"
    assert team["rita"].get_version("churn", 1).stage.value == "development"


def test_operator_rolls_back_and_records_a_deployment(team: dict[str, Any], tmp_path: Any) -> None:
    bob, alice, olga = team["bob"], team["alice"], team["olga"]
    alice.approve("churn", 1)
    olga.transition("churn", 1, "production")
    path = tmp_path / "v2.bin"
    path.write_bytes(b"v2")
    bob.register("churn", path)
    bob.transition("churn", 2, "staging")
    alice.approve("churn", 2)
    olga.transition("churn", 2, "production")
    with pytest.raises(errors.Forbidden):
        bob.rollback("churn", reason="not mine to do")
    result = olga.rollback("churn", reason="latency", expected_version=2)
    assert (result.demoted, result.restored, result.actor) == (2, 1, "olga")
    event = olga.record_deployment("churn", 1, target="serving", ok=True)
    assert event.actor == "olga"
    olga.set_alias("churn", "canary", 2)
    assert team["rita"].resolve("churn@canary").version == 2
    olga.remove_alias("churn", "canary")
    with pytest.raises(errors.AliasNotFound):
        team["rita"].resolve("churn@canary")
    assert [v.version for v in team["rita"].versions("churn", limit=1)] == [2]
    assert [v.version for v in team["rita"].versions("churn", before=2)] == [1]
    assert team["rita"].history("churn")[-1].kind == "rollback"
