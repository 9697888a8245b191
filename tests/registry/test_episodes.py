"""Drift acts once per episode (registry/episodes.py) on SQLite, PostgreSQL and the server."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from registry import Policy, Registry, Stage
from registry.episodes import IGNORED, SKIPPED, handle_drift
from registry.errors import InvalidInput, ModelNotFound, VersionNotFound

DRIFT = "drift detected: max PSI 0.91"


def _promote_next(reg: Registry, artifact: Path, name: str = "churn") -> int:
    v = reg.register(name, artifact, actor="alice").version
    reg.transition(name, v, "staging", actor="alice")
    reg.approve(name, v, actor="bob")
    reg.transition(name, v, "production", actor="carol")
    return v


def _line(reg: Registry, artifact: Path, n: int, name: str = "churn") -> None:
    for _ in range(n):
        _promote_next(reg, artifact, name)


def _actions(reg: Registry, name: str = "churn") -> list[str]:
    return [e.action for e in reg.audit_log(model=name)]


def _production(reg: Registry, name: str = "churn") -> int:
    return reg.resolve(f"{name}@production").version


def test_drift_on_a_version_not_in_production_is_ignored_and_audited(registry: Registry, artifact) -> None:
    _line(registry, artifact, 2)
    out = handle_drift(registry, "churn", 1, reason=DRIFT, actor="monitor-bot")
    assert out.action == "ignored" and out.production == 2 and out.restored is None
    assert out.reason == "drift on churn/1 ignored: it is not in production (version 2 is)"
    last = registry.audit_log(model="churn")[-1]
    assert (last.action, last.version, last.actor) == (IGNORED, 1, "monitor-bot")
    assert {k: last.payload[k] for k in ("reason", "drift_reason", "production")} == {
        "reason": out.reason,
        "drift_reason": DRIFT,
        "production": 2,
    }
    assert _production(registry) == 2 and "model.rolled_back" not in _actions(registry)
    assert registry.verify_audit().ok  # a drift record replays as a no-op on the state tables


def test_spoofed_or_malformed_events_are_refused_and_write_nothing(registry: Registry, artifact) -> None:
    _line(registry, artifact, 2)
    before = len(registry.audit_log())
    with pytest.raises(VersionNotFound):
        handle_drift(registry, "churn", 9, reason=DRIFT)
    with pytest.raises(ModelNotFound):
        handle_drift(registry, "nope", 1, reason=DRIFT)
    for version in ("2", True, 2.0, 0):
        with pytest.raises(InvalidInput, match="^version: ") as caught:
            handle_drift(registry, "churn", version, reason=DRIFT)  # type: ignore[arg-type]
        assert caught.value.field == "version"
    with pytest.raises(InvalidInput, match="^reason: "):
        handle_drift(registry, "churn", 2, reason="  ")
    with pytest.raises(InvalidInput, match="^model: "):
        handle_drift(registry, "Churn\u200b", 2, reason=DRIFT)
    assert len(registry.audit_log()) == before
    assert _production(registry) == 2


def test_first_drift_rolls_back_once_and_the_restored_version_stays(registry: Registry, artifact) -> None:
    _line(registry, artifact, 3)
    first = handle_drift(registry, "churn", 3, reason=DRIFT, actor="monitor-bot")
    assert (first.action, first.demoted, first.restored, first.production) == ("rolled-back", 3, 2, 3)
    assert first.reason == f"rolled churn back from version 3 to 2: {DRIFT}"
    # The next hour the data is still drifted, now measured against the restored version 2.
    again = handle_drift(registry, "churn", 2, reason=DRIFT, actor="monitor-bot")
    assert again.action == "ignored" and again.handled_at is not None
    assert again.reason.startswith("drift on churn/2 ignored: episode already handled at ")
    assert "rolled back from version 3 to 2 by monitor-bot" in again.reason
    stale = handle_drift(registry, "churn", 3, reason=DRIFT)  # a late event about the demoted one
    assert stale.action == "ignored" and "not in production (version 2 is)" in stale.reason
    assert _production(registry) == 2
    assert registry.get_version("churn", 1).stage == Stage.ARCHIVED  # v-2 was not restored
    assert _actions(registry).count("model.rolled_back") == 1
    assert _actions(registry)[-2:] == [IGNORED, IGNORED]


def test_nothing_to_restore_is_skipped_recorded_and_closes_the_episode(registry: Registry, artifact) -> None:
    _line(registry, artifact, 1)
    out = handle_drift(registry, "churn", 1, reason=DRIFT, actor="monitor-bot")
    assert out.action == "skipped" and out.restored is None and out.production == 1
    assert out.reason.startswith("drift on churn/1: nothing approved to restore (")
    skip = registry.audit_log(model="churn")[-1]
    assert (skip.action, skip.version) == (SKIPPED, 1)
    assert "no earlier production version may be restored" in skip.payload["refusal"]
    nxt = handle_drift(registry, "churn", 1, reason=DRIFT)
    assert nxt.action == "ignored" and "rollback skipped: nothing approved to restore" in nxt.reason
    assert nxt.handled_at == skip.at
    assert _production(registry) == 1 and _actions(registry).count(SKIPPED) == 1


def test_a_skip_recorded_for_another_version_does_not_close_the_episode(registry: Registry, artifact) -> None:
    _line(registry, artifact, 2)
    # A forged skip naming a version that is not in production: drift on version 2 still acts.
    registry.record(SKIPPED, model="churn", version=1, payload={"reason": "forged"}, actor="mallory")
    assert handle_drift(registry, "churn", 2, reason=DRIFT).action == "rolled-back"
    assert _production(registry) == 1


def test_a_forged_skip_for_the_live_version_does_not_stop_the_rollback(registry: Registry, artifact) -> None:
    """A skip is a note anyone who may record events can write: drift still rolls back when an
    approved version may be restored."""
    _line(registry, artifact, 2)
    registry.record(SKIPPED, model="churn", version=2, payload={"reason": "forged"}, actor="mallory")
    out = handle_drift(registry, "churn", 2, reason=DRIFT)
    assert (out.action, out.restored) == ("rolled-back", 1)
    assert _production(registry) == 1


def test_a_new_promotion_opens_a_new_episode(registry: Registry, artifact) -> None:
    _line(registry, artifact, 2)
    assert handle_drift(registry, "churn", 2, reason=DRIFT).restored == 1
    v3 = _promote_next(registry, artifact)
    again = handle_drift(registry, "churn", v3, reason=DRIFT)
    assert (again.action, again.demoted, again.restored) == ("rolled-back", 3, 1)  # 2 was rolled back
    # Now nothing is left: the episode of version 1's restoration was opened by version 3's promotion
    # and is closed by that rollback, so drift on 1 is ignored, not skipped.
    assert handle_drift(registry, "churn", 1, reason=DRIFT).action == "ignored"


def test_a_promotion_after_a_skip_opens_a_new_episode(registry: Registry, artifact) -> None:
    _line(registry, artifact, 1)
    assert handle_drift(registry, "churn", 1, reason=DRIFT).action == "skipped"
    v2 = _promote_next(registry, artifact)
    out = handle_drift(registry, "churn", v2, reason=DRIFT)
    assert (out.action, out.restored) == ("rolled-back", 1)


def test_a_manual_rollback_counts_as_the_episode_action(registry: Registry, artifact) -> None:
    _line(registry, artifact, 3)
    registry.rollback("churn", reason="bad predictions reported", actor="oncall")
    out = handle_drift(registry, "churn", 2, reason=DRIFT)
    assert out.action == "ignored" and "by oncall" in out.reason
    assert _production(registry) == 2 and registry.get_version("churn", 1).stage == Stage.ARCHIVED


def test_no_production_version_means_ignored(registry: Registry, artifact) -> None:
    _line(registry, artifact, 1)
    registry.transition("churn", 1, "archived", actor="carol", reason="retired")
    out = handle_drift(registry, "churn", 1, reason=DRIFT)
    assert out.action == "ignored" and out.production is None
    assert out.reason == "drift on churn/1 ignored: it is not in production (no version is)"


def test_the_episode_search_reads_back_past_its_first_window(
    registry: Registry, artifact, monkeypatch
) -> None:
    from registry import episodes

    _line(registry, artifact, 2)
    monkeypatch.setattr(episodes, "_FIRST_WINDOW", 2)
    for n in range(5):  # push the promotion out of the first windows
        registry.record("custom.note", model="churn", payload={"n": n}, actor="alice")
    assert handle_drift(registry, "churn", 2, reason=DRIFT).action == "rolled-back"
    for n in range(5):
        registry.record("custom.note", model="churn", payload={"n": n}, actor="alice")
    assert handle_drift(registry, "churn", 1, reason=DRIFT).action == "ignored"


# --- two processes, one event ----------------------------------------------------------------


def _handle(url: str, root: str, barrier) -> str:
    reg = Registry(url=url, artifact_root=root, policy=Policy())
    barrier.wait()
    out = handle_drift(reg, "race", 3, reason=DRIFT, actor="monitor-bot")
    reg.close()
    return out.action


def test_processes_handling_the_same_event_roll_back_exactly_once(
    backend_url: str, tmp_path, artifact
) -> None:
    root = str(tmp_path / "artifacts")
    reg = Registry(url=backend_url, artifact_root=root, policy=Policy())
    _line(reg, artifact, 3, name="race")
    racers = 3
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    barrier = manager.Barrier(racers)
    with ctx.Pool(racers) as pool:
        actions = pool.starmap(_handle, [(backend_url, root, barrier)] * racers)
    manager.shutdown()
    assert sorted(actions) == ["ignored"] * (racers - 1) + ["rolled-back"]
    assert _actions(reg, "race").count("model.rolled_back") == 1
    assert _production(reg, "race") == 2 and reg.get_version("race", 1).stage == Stage.ARCHIVED
    assert reg.verify_audit().ok
    reg.close()
