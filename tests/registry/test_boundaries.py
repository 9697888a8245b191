"""The API boundary: what one backend would store differently, or hash differently, is refused.

Each test here failed before the boundary checks: a string version that was stored as 1 and
hashed as "1", a trailing newline that `$` let through, NaN and NUL that SQLite kept and
PostgreSQL refused, and evidence whose audit payload differed from the stored row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from registry import Registry
from registry.errors import InvalidInput, RollbackRefused


def _counts(reg: Registry) -> tuple[int, ...]:
    with reg.db.engine.connect() as conn:
        return tuple(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("versions", "approvals", "evidence", "aliases", "stage_history", "audit_events")
        )


@pytest.fixture
def staged(registry: Registry, artifact: Path) -> Registry:
    registry.register("m", artifact, actor="alice")
    registry.transition("m", 1, "staging", actor="alice")
    return registry


BAD_VERSIONS = ["1", 1.0, True, None, b"1", 2**31, 0, -1]


def test_versions_must_be_ints_in_range(staged: Registry) -> None:
    before = _counts(staged)
    for version in BAD_VERSIONS:
        _refuse_version(staged, version)
    assert _counts(staged) == before
    assert staged.verify_audit().ok


def _refuse_version(staged: Registry, version: object) -> None:
    calls = [
        lambda: staged.transition("m", version, "development", actor="alice"),  # type: ignore[arg-type]
        lambda: staged.approve("m", version, actor="bob"),  # type: ignore[arg-type]
        lambda: staged.reject("m", version, actor="bob", reason="no"),  # type: ignore[arg-type]
        lambda: staged.set_alias("m", "champion", version, actor="bob"),  # type: ignore[arg-type]
        lambda: staged.add_evidence("m", version, gate="g", passed=True, actor="ci"),  # type: ignore[arg-type]
        lambda: staged.get_version("m", version),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.field == "version", version


def test_refs_with_odd_digits_are_refused(staged: Registry) -> None:
    for ref in ["m/²", "m/99999999999999999999", "m/٣", "m/1\n", "m/01x", "m/0"]:
        with pytest.raises(InvalidInput, match="version"):
            staged.get(ref)
        with pytest.raises(InvalidInput):
            staged.resolve(ref)


BAD_NAMES = ["production\n", "m\n", "m\r", "m\u200b", "m\u2060", "\ufeffm", "m\x00", "m\u2028", "ｍ", "M", ""]


def test_names_and_aliases_match_in_full(staged: Registry, artifact: Path) -> None:
    before = _counts(staged)
    for name in BAD_NAMES:
        with pytest.raises(InvalidInput) as err:
            staged.set_alias("m", name, 1, actor="bob")
        assert err.value.field == "alias", repr(name)
        with pytest.raises(InvalidInput) as err:
            staged.register(name, artifact, actor="alice")
        assert err.value.field == "name", repr(name)
    assert _counts(staged) == before


def test_actors_with_control_or_format_characters_are_refused(staged: Registry) -> None:
    before = _counts(staged)
    for actor in ["bob\n", "bob\u200b", "\u2060bob", "bo\x00b", "bob\u2029", "b\x1bob", 7]:
        with pytest.raises(InvalidInput) as err:
            staged.approve("m", 1, actor=actor)  # type: ignore[arg-type]
        assert err.value.field == "actor", repr(actor)
    assert _counts(staged) == before


BACKEND_SPLITS = [
    ({"params": {"lr": float("nan")}}, "params.lr"),
    ({"params": {"lr": float("inf")}}, "params.lr"),
    ({"params": {"s": "a\x00b"}}, "params.s"),
    ({"tags": {"team": "x\x00"}}, "tags.team"),
    ({"description": "nul\x00here"}, "description"),
    ({"lineage": {"code": {"commit": "ab\x00cd"}}}, "lineage.code.commit"),
    ({"drift_reference": {"x": {"edges": [float("nan")]}}}, "drift_reference.x.edges"),
]


def test_both_backends_refuse_what_one_would_keep(registry: Registry, artifact: Path) -> None:
    for fields, field in BACKEND_SPLITS:
        with pytest.raises(InvalidInput) as err:
            registry.register("m", artifact, actor="alice", **fields)
        assert err.value.field == field
    assert _counts(registry) == (0, 0, 0, 0, 0, 0)


def test_nul_in_a_reason_is_refused(staged: Registry) -> None:
    with pytest.raises(InvalidInput, match="reason"):
        staged.reject("m", 1, actor="bob", reason="bad\x00")


BAD_EVIDENCE = [
    ({"passed": "no"}, "passed"),
    ({"passed": 0}, "passed"),
    ({"passed": True, "value": "0.5"}, "value"),
    ({"passed": True, "value": True}, "value"),
    ({"passed": True, "threshold": float("nan")}, "threshold"),
    ({"passed": True, "details": {"k": float("inf")}}, "details.k"),
    ({"passed": True, "details": ["not", "a", "mapping"]}, "details"),
]


def test_evidence_is_stored_as_given_or_refused(staged: Registry) -> None:
    before = _counts(staged)
    for kwargs, field in BAD_EVIDENCE:
        with pytest.raises(InvalidInput) as err:
            staged.add_evidence("m", 1, gate="fairness", actor="ci", **kwargs)
        assert err.value.field == field
    assert _counts(staged) == before


def test_evidence_payload_equals_the_stored_row(staged: Registry) -> None:
    staged.add_evidence("m", 1, gate="acc", passed=False, value=1, threshold=2, details={"n": 3}, actor="ci")
    event = staged.audit_log()[-1]
    stored = staged.get_version("m", 1).evidence[-1]
    assert event.payload.pop("via")["channel"] == "api"  # over HTTP it names the principal too
    assert event.payload == {
        "gate": stored.gate,
        "passed": stored.passed,
        "value": stored.value,
        "threshold": stored.threshold,
        "details": stored.details,
    }
    assert isinstance(event.payload["value"], float)
    assert staged.verify_audit().ok


def test_record_cannot_write_the_registrys_own_events(staged: Registry) -> None:
    before = _counts(staged)
    for action in [
        "version.approved",
        "version.promoted",
        "alias.set",
        "evidence.added",
        "policy.recorded",
        "model.rolled_back",
    ]:
        with pytest.raises(InvalidInput, match="registry's own namespace"):
            staged.record(action, model="m", version=1, payload={"approved_by": ["bob"]}, actor="mallory")
    assert _counts(staged) == before


def test_record_takes_custom_events(staged: Registry) -> None:
    event = staged.record("custom.note", model="m", version=1, payload={"ticket": "OPS-1"}, actor="ops")
    assert event.action == "custom.note"
    with pytest.raises(InvalidInput, match="action"):
        staged.record("custom.note\n", actor="ops")
    assert staged.verify_audit().ok


def _promote(reg: Registry, artifact: Path) -> int:
    number = reg.register("m", artifact, actor="alice").version
    reg.transition("m", number, "staging", actor="alice")
    reg.approve("m", number, actor="bob")
    reg.transition("m", number, "production", actor="alice")
    return number


def test_rollback_never_restores_a_version_rejected_after_it_left_production(
    registry: Registry, artifact: Path
) -> None:
    _promote(registry, artifact)
    _promote(registry, artifact)
    registry.transition("m", 1, "staging", actor="alice")
    registry.reject("m", 1, actor="carol", reason="CVE; never serve again")
    assert registry.get_version("m", 1).stage.value == "development"
    before = _counts(registry)
    with pytest.raises(RollbackRefused, match="version 1: .*under a new review"):
        registry.rollback("m", reason="drift", actor="ops")
    assert _counts(registry) == before
    # Archived again, it is still not restorable: the rejection came after it left production.
    registry.transition("m", 1, "archived", actor="alice")
    with pytest.raises(RollbackRefused, match="carol rejected it after it left production"):
        registry.rollback("m", reason="drift", actor="ops")
    assert registry.resolve("m@production").version == 2


def test_rollback_respects_the_current_policy(backend_url: str, tmp_path: Path, artifact: Path) -> None:
    from registry import Policy

    reg = Registry(url=backend_url, artifact_root=str(tmp_path / "a"), policy=Policy())
    _promote(reg, artifact)
    _promote(reg, artifact)
    reg.set_policy(Policy.from_dict({"stages": {"production": {"approvals": 2}}}), actor="admin")
    with pytest.raises(RollbackRefused, match="needs 2 approval"):
        reg.rollback("m", reason="drift", actor="ops")
    reg.set_policy(Policy.from_dict({"stages": {"production": {"gates": ["fairness"]}}}), actor="admin")
    with pytest.raises(RollbackRefused, match="gates are not met"):
        reg.rollback("m", reason="drift", actor="ops")
    reg.set_policy(Policy(), actor="admin")
    assert reg.rollback("m", reason="drift", actor="ops").restored == 1
    reg.close()


def test_look_alike_actors_are_the_same_person(backend_url: str, tmp_path: Path, artifact: Path) -> None:
    from registry import Policy
    from registry.errors import ApprovalRequired, SeparationOfDuties

    reg = Registry(
        url=backend_url,
        artifact_root=str(tmp_path / "a"),
        policy=Policy.from_dict({"stages": {"production": {"approvals": 2}}}),
    )
    reg.register("m", artifact, actor="bob")
    reg.transition("m", 1, "staging", actor="bob")
    for spoof in ("Bob", "ｂｏｂ", "BOB", "ᵇob"):
        with pytest.raises(SeparationOfDuties, match="registered m/1"):
            reg.approve("m", 1, actor=spoof)
    with pytest.raises(InvalidInput, match="actor"):
        reg.approve("m", 1, actor="bob\u200b")
    reg.approve("m", 1, actor="carol")
    with pytest.raises(SeparationOfDuties, match="already decided"):
        reg.approve("m", 1, actor="Carol")
    with pytest.raises(ApprovalRequired, match="it has 1"):
        reg.transition("m", 1, "production", actor="bob")
    reg.close()


def test_values_the_fuzzers_found(staged: Registry, artifact: Path) -> None:
    before = _counts(staged)
    cases = [
        (lambda: staged.register("m", artifact, actor="a", tags={"k": "\udcff"}), "tags.k"),
        (lambda: staged.register("m", artifact, actor="a", params={"k": 10**30}), "params.k"),
        (lambda: staged.register("m", artifact, actor="a", params={"": 1}), "params"),
        (lambda: staged.register("m", artifact, actor="a", tags={"": "x"}), "tags"),
        (
            lambda: staged.register("m", artifact, actor="a", lineage={"code": {"commit": "c" * 100}}),
            "lineage.code.commit",
        ),
        (
            lambda: staged.register("m", artifact, actor="a", lineage={"run": {"flow_name": "f" * 300}}),
            "lineage.run.flow_name",
        ),
        (
            lambda: staged.register(
                "m",
                artifact,
                actor="a",
                lineage={"datasets": [{"role": "train", "uri": "d", "rows": 10**20}]},
            ),
            "lineage.datasets.0.rows",
        ),
        (lambda: staged.add_evidence("m", 1, gate="g", passed=True, value=10**400, actor="ci"), "value"),
        (lambda: staged.register("m", artifact, actor="a", metrics={"auc": 10**400}), "metric auc"),
        (lambda: staged.reject("m", 1, actor="bob", reason="bad \udcff"), "reason"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.field == field, (field, err.value)
        assert field.split(".")[0] in str(err.value)
    assert _counts(staged) == before
    from registry.gc import parse_duration

    with pytest.raises(InvalidInput, match="older-than"):
        parse_duration("1e999d")
