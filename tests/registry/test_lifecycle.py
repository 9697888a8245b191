"""Stages, approvals, gates, aliases and rollback (DESIGN invariants 2, 5, 6) on both backends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from registry import Policy, Registry, Stage
from registry.errors import (
    AliasNotFound,
    ApprovalRequired,
    GateFailed,
    IllegalTransition,
    NotAnApprover,
    Refused,
    RollbackRefused,
    SeparationOfDuties,
    VersionNotFound,
)


def _staged(reg: Registry, artifact, name: str = "churn", by: str = "alice") -> int:
    v = reg.register(name, artifact, actor=by, metrics={"auc": 0.8})
    reg.transition(name, v.version, "staging", actor=by)
    return v.version


def _promote(reg: Registry, artifact, name: str = "churn") -> int:
    number = _staged(reg, artifact, name)
    reg.approve(name, number, actor="bob", reason="looks good")
    reg.transition(name, number, "production", actor="carol")
    return number


def _event_count(reg: Registry) -> int:
    return len(reg.audit_log())


def test_illegal_transition_names_allowed_moves(registry: Registry, artifact) -> None:
    registry.register("churn", artifact, actor="alice")
    with pytest.raises(IllegalTransition, match="staging, archived"):
        registry.transition("churn", 1, "production", actor="alice")
    assert registry.get_version("churn", 1).stage == Stage.DEVELOPMENT


def test_production_needs_approval_from_someone_else(registry: Registry, artifact) -> None:
    _staged(registry, artifact)
    before = _event_count(registry)
    with pytest.raises(ApprovalRequired, match="needs 1 approval"):
        registry.transition("churn", 1, "production", actor="alice")
    with pytest.raises(SeparationOfDuties, match="registered churn/1"):
        registry.approve("churn", 1, actor="alice")
    assert _event_count(registry) == before  # refusals write nothing
    registry.approve("churn", 1, actor="bob")
    with pytest.raises(SeparationOfDuties, match="already decided"):
        registry.approve("churn", 1, actor="bob")
    v = registry.transition("churn", 1, "production", actor="alice")
    assert v.stage == Stage.PRODUCTION
    assert "production" in v.aliases
    assert registry.resolve("churn@production").version == 1


def test_two_distinct_approvers_and_allowed_list(backend_url: str, tmp_path, artifact) -> None:
    policy = Policy.from_dict(
        {"stages": {"production": {"approvals": 2, "approvers": ["bob", "dana", "erin"]}}}
    )
    reg = Registry(url=backend_url, artifact_root=str(tmp_path / "a"), policy=policy)
    _staged(reg, artifact)
    with pytest.raises(NotAnApprover, match="mallory is not an approver"):
        reg.approve("churn", 1, actor="mallory")
    reg.approve("churn", 1, actor="bob")
    with pytest.raises(ApprovalRequired, match=r"it has 1 \(bob\)"):
        reg.transition("churn", 1, "production", actor="bob")
    reg.approve("churn", 1, actor="dana")
    assert reg.transition("churn", 1, "production", actor="bob").stage == Stage.PRODUCTION
    reg.close()


def test_approval_outside_review_stage_is_refused(registry: Registry, artifact) -> None:
    registry.register("churn", artifact, actor="alice")
    with pytest.raises(Refused, match="is in development"):
        registry.approve("churn", 1, actor="bob")


def test_required_gates_missing_failed_then_passed(backend_url: str, tmp_path, artifact) -> None:
    policy = Policy.from_dict({"stages": {"production": {"approvals": 1, "gates": ["accuracy", "fairness"]}}})
    reg = Registry(url=backend_url, artifact_root=str(tmp_path / "a"), policy=policy)
    _staged(reg, artifact)
    reg.approve("churn", 1, actor="bob")
    with pytest.raises(GateFailed, match="missing: accuracy, fairness"):
        reg.transition("churn", 1, "production", actor="bob")
    reg.add_evidence("churn", 1, gate="accuracy", passed=True, value=0.91, threshold=0.8)
    reg.add_evidence("churn", 1, gate="fairness", passed=False, value=0.2, threshold=0.1)
    with pytest.raises(GateFailed, match="failed: fairness"):
        reg.transition("churn", 1, "production", actor="bob")
    # Evidence is append-only: a later passing result supersedes, the failure stays on record.
    reg.add_evidence("churn", 1, gate="fairness", passed=True, value=0.05, threshold=0.1)
    v = reg.transition("churn", 1, "production", actor="bob")
    assert v.stage == Stage.PRODUCTION
    assert [(e.gate, e.passed) for e in v.evidence] == [
        ("accuracy", True),
        ("fairness", False),
        ("fairness", True),
    ]
    reg.close()


def test_promotion_archives_previous_and_db_enforces_single_production(registry: Registry, artifact) -> None:
    _promote(registry, artifact)
    _promote(registry, artifact)
    stages = {v.version: v.stage for v in registry.versions("churn")}
    assert stages == {1: Stage.ARCHIVED, 2: Stage.PRODUCTION}
    # The partial unique index refuses a second production row even when code is bypassed.
    with pytest.raises(sa.exc.IntegrityError), registry.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE versions SET stage = 'production' WHERE version = 1"))


def test_reject_sends_back_to_development_and_voids_round(registry: Registry, artifact) -> None:
    _staged(registry, artifact)
    registry.approve("churn", 1, actor="bob")
    registry.reject("churn", 1, actor="dana", reason="fairness gap")
    v = registry.get_version("churn", 1)
    assert v.stage == Stage.DEVELOPMENT
    assert not any(a.current for a in v.approvals)
    registry.transition("churn", 1, "staging", actor="alice")
    with pytest.raises(ApprovalRequired):  # bob's earlier approval lapsed with the review round
        registry.transition("churn", 1, "production", actor="alice")


def test_rollback_restores_previous_and_skips_rolled_back(registry: Registry, artifact) -> None:
    for _ in range(3):
        _promote(registry, artifact)
    result = registry.rollback("churn", reason="drift", actor="ops")
    assert (result.demoted, result.restored) == (3, 2)
    v3 = registry.get_version("churn", 3)
    assert v3.rolled_back and v3.rollback_reason == "drift" and v3.stage == Stage.ARCHIVED
    assert registry.resolve("churn@production").version == 2
    result = registry.rollback("churn", reason="still bad", actor="ops")
    assert (result.demoted, result.restored) == (2, 1)
    before = _event_count(registry)
    with pytest.raises(RollbackRefused, match="no earlier production version may be restored"):
        registry.rollback("churn", reason="again", actor="ops")
    assert registry.resolve("churn@production").version == 1
    assert _event_count(registry) == before
    rolled = registry.audit_log(model="churn")[-1]
    assert rolled.action == "model.rolled_back"
    assert rolled.payload.pop("via")["channel"] == "api"
    assert rolled.payload == {
        "from_version": 2,
        "to_version": 1,
        "reason": "still bad",
        "policy_sha256": rolled.payload["policy_sha256"],
    }
    assert registry.policy_document(rolled.payload["policy_sha256"]) is not None


def test_rolled_back_version_needs_fresh_approval(registry: Registry, artifact) -> None:
    _promote(registry, artifact)
    _promote(registry, artifact)
    registry.rollback("churn", reason="bad", actor="ops")
    registry.transition("churn", 2, "staging", actor="alice")
    with pytest.raises(ApprovalRequired):
        registry.transition("churn", 2, "production", actor="alice")
    registry.approve("churn", 2, actor="bob")  # bob may decide again in the new round
    registry.transition("churn", 2, "production", actor="alice")
    # A version once rolled back is never a rollback target again.
    _promote(registry, artifact)
    assert registry.rollback("churn", reason="x", actor="ops").restored == 1


def test_rollback_without_production_is_refused(registry: Registry, artifact) -> None:
    registry.register("churn", artifact, actor="alice")
    with pytest.raises(RollbackRefused, match="no version in production"):
        registry.rollback("churn", reason="x", actor="ops")


def test_leaving_production_clears_alias(registry: Registry, artifact) -> None:
    _promote(registry, artifact)
    registry.transition("churn", 1, "archived", actor="ops", reason="retired")
    with pytest.raises(AliasNotFound):
        registry.resolve("churn@production")


def test_aliases_set_move_remove(registry: Registry, artifact) -> None:
    registry.register("churn", artifact, actor="alice")
    registry.register("churn", artifact, actor="alice")
    registry.set_alias("churn", "champion", 1, actor="alice")
    registry.set_alias("churn", "champion", 2, actor="alice")
    assert registry.resolve("churn@champion").version == 2
    assert registry.get("churn@champion").aliases == ["champion"]
    with pytest.raises(Refused, match="production follows"):
        registry.set_alias("churn", "production", 1)
    with pytest.raises(VersionNotFound):
        registry.set_alias("churn", "champion", 9)
    registry.remove_alias("churn", "champion", actor="alice")
    with pytest.raises(AliasNotFound):
        registry.remove_alias("churn", "champion", actor="alice")
    actions = [e.action for e in registry.audit_log(model="churn")]
    assert actions.count("alias.set") == 2 and actions.count("alias.removed") == 1


def test_transition_returns_the_stored_state(registry: Registry, artifact) -> None:
    _staged(registry, artifact)
    registry.approve("churn", 1, actor="bob")
    returned = registry.transition("churn", 1, "production", actor="carol")
    assert returned == registry.get_version("churn", 1)
    assert returned.review_round == 2 and returned.aliases == ["production"]


def test_decisions_on_a_production_version_are_refused(registry: Registry, artifact) -> None:
    _promote(registry, artifact)
    for stage in ("archived", "staging"):
        with pytest.raises(Refused, match="under review"):
            registry.reject("churn", 1, reason="oops", actor="carol", stage=stage)
    assert registry.get("churn@production").stage == Stage.PRODUCTION


def test_listing_a_stage_in_the_policy_keeps_the_production_approval(backend_url: str, tmp_path, artifact) -> None:
    for stages in ({"production": {"gates": []}}, {"staging": {"approvals": 0}}):
        reg = Registry(url=backend_url, artifact_root=str(tmp_path / "a"))
        reg.set_policy(Policy.from_dict({"stages": stages}), actor="admin")
        n = _staged(reg, artifact)
        with pytest.raises(ApprovalRequired):
            reg.transition("churn", n, "production", actor="alice")
        reg.close()
    explicit = Policy.from_dict({"stages": {"production": {"approvals": 0}}})
    assert explicit.rule(Stage.PRODUCTION).approvals == 0


def test_registrant_cannot_clear_a_failed_gate(backend_url: str, tmp_path, artifact) -> None:
    policy = Policy.from_dict({"stages": {"production": {"gates": ["fairness"]}}})
    reg = Registry(url=backend_url, artifact_root=str(tmp_path / "a"), policy=policy)
    _staged(reg, artifact)
    reg.approve("churn", 1, actor="bob")
    reg.add_evidence("churn", 1, gate="fairness", passed=False, actor="alice")
    reg.add_evidence("churn", 1, gate="fairness", passed=True, actor="alice")
    with pytest.raises(GateFailed, match="registrant alice does not clear"):
        reg.transition("churn", 1, "production", actor="bob")
    reg.add_evidence("churn", 1, gate="fairness", passed=True, actor="fairness-review")
    assert reg.transition("churn", 1, "production", actor="bob").stage == Stage.PRODUCTION
    reg.close()


def test_rollback_of_a_version_no_longer_live_is_refused(registry: Registry, artifact) -> None:
    _promote(registry, artifact)
    _promote(registry, artifact)
    with pytest.raises(RollbackRefused, match="churn/1 is no longer in production"):
        registry.rollback("churn", reason="drift on v1", actor="ops", expected_version=1)
    assert registry.resolve("churn@production").version == 2
    assert registry.rollback("churn", reason="drift on v2", expected_version=2).restored == 1
