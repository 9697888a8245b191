"""Waiting for approval and settling the wait (registry/waiting.py) on SQLite, PostgreSQL and the server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from registry import Registry, Stage, waiting
from registry.errors import Forbidden, InvalidInput, SeparationOfDuties
from registry.identity import acting

NAME = "churn"


def _staged(reg: Registry, artifact: Path) -> int:
    v = reg.register(NAME, artifact, actor="pipeline-bot").version
    reg.transition(NAME, v, "staging", actor="pipeline-bot")
    return v


def test_a_wait_is_recorded_once_per_run_and_a_rerun_keeps_its_deadline(registry: Registry, artifact) -> None:
    v = registry.get_version(NAME, _staged(registry, artifact))
    first = waiting.mark_waiting(registry, v, run_id="run-1", timeout=3600, actor="pipeline-bot")
    again = waiting.mark_waiting(registry, v, run_id="run-1", timeout=7200, actor="pipeline-bot")
    assert again == first  # a resumed run does not extend its wait
    assert [e.action for e in registry.audit_log(model=NAME)].count("run.waiting") == 1
    assert waiting.current_wait(registry, v) == first
    assert not first.expired()


@pytest.mark.parametrize("timeout", ["3600", True, 0, -5, 1.5, None])
def test_a_wait_needs_a_positive_whole_timeout(registry: Registry, artifact, timeout) -> None:
    v = registry.get_version(NAME, _staged(registry, artifact))
    with pytest.raises(InvalidInput, match="timeout"):
        waiting.mark_waiting(registry, v, run_id="run-1", timeout=timeout, actor="pipeline-bot")
    assert "run.waiting" not in [e.action for e in registry.audit_log(model=NAME)]


def test_settle_rejects_without_approvals_and_audits_it(registry: Registry, artifact) -> None:
    v = _staged(registry, artifact)
    out = waiting.settle(registry, NAME, v, reason="approval timed out", actor="pipeline-bot")
    assert out.outcome == "rejected" and "approval timed out" in out.reason
    assert registry.get_version(NAME, v).stage == Stage.DEVELOPMENT
    rejected = [e for e in registry.audit_log(model=NAME) if e.action == "version.rejected"]
    assert len(rejected) == 1 and "approval timed out" in rejected[0].payload["reason"]
    # Settling again changes nothing.
    assert waiting.settle(registry, NAME, v, reason="again", actor="pipeline-bot").outcome == "untouched"


def test_settle_promotes_on_the_registry_approvals(registry: Registry, artifact) -> None:
    v = _staged(registry, artifact)
    registry.approve(NAME, v, actor="risk-officer")
    out = waiting.settle(registry, NAME, v, reason="the waiting run ended Cancelled", actor="ops")
    assert out.outcome == "promoted" and out.approvers == ["risk-officer"]
    assert registry.resolve(f"{NAME}@production").version == v


def test_settle_does_not_count_the_registrants_own_approval(registry: Registry, artifact) -> None:
    v = _staged(registry, artifact)
    with pytest.raises(SeparationOfDuties):  # refused outright, however the name is spelled
        registry.approve(NAME, v, actor="Pipeline-Bot")
    assert waiting.settle(registry, NAME, v, reason="timed out", actor="pipeline-bot").outcome == "rejected"


def test_a_wait_recorded_by_someone_else_is_ignored(registry: Registry, artifact) -> None:
    """An insider with record rights cannot forge an expired wait to get a version rejected early."""
    v = registry.get_version(NAME, _staged(registry, artifact))
    forged = {"orchestrator": "prefect", "run_id": "x", "deadline": "2000-01-01T00:00:00+00:00", "timeout": 1}
    registry.record("run.waiting", model=NAME, version=v.version, payload=forged, actor="mallory")
    assert waiting.current_wait(registry, v) is None
    assert waiting.waiting(registry, NAME) == [(registry.get_version(NAME, v.version), None)]
    # The registrant's own record counts, spelled however.
    registry.record("run.waiting", model=NAME, version=v.version, payload=forged, actor="PIPELINE-BOT")
    assert waiting.current_wait(registry, v).expired()


def test_a_wait_from_an_earlier_review_does_not_count(registry: Registry, artifact) -> None:
    v = _staged(registry, artifact)
    waiting.mark_waiting(registry, registry.get_version(NAME, v), run_id="old", timeout=1, actor="pipeline-bot")
    registry.reject(NAME, v, reason="not yet", actor="risk-officer")
    time.sleep(0.01)  # the next stage change is strictly later than the old record
    registry.transition(NAME, v, "staging", actor="pipeline-bot")
    assert waiting.current_wait(registry, registry.get_version(NAME, v)) is None
    listed = waiting.waiting(registry)
    assert [(x.version, w) for x, w in listed] == [(v, None)]


@pytest.mark.embedded_only("acts as a principal with roles, which the server's admin client cannot")
def test_settle_raises_a_refusal_it_cannot_turn_into_a_rejection(registry: Registry, artifact) -> None:
    """A caller who may not promote gets Forbidden; the version is not quietly rejected instead."""
    v = _staged(registry, artifact)
    registry.approve(NAME, v, actor="risk-officer")
    with acting(principal="viewer", roles=frozenset({"reader"})), pytest.raises(Forbidden):
        waiting.settle(registry, NAME, v, reason="timed out")
    assert registry.get_version(NAME, v).stage == Stage.STAGING
