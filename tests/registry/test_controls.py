"""The governance controls, pinned: rows written around the API must not satisfy the policy;
edits to the audit chain, the tables or the model cache must be caught; every refusal names the
version and the rule (DESIGN invariants 4-8, 12, 14, 15).

Each test pins behaviour that a one-line change of registry/ (a mutant, ``make mutate``) would
break and that the rest of the suite let through.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

from registry import Policy, Registry, Stage, serialization
from registry.audit import canonical
from registry.errors import ApprovalRequired, ArtifactNotFound, DigestMismatch, GateFailed, RollbackRefused

# An approval row written straight into the database, as a DBA or a compromised job could.
_INSIDER_DECISION = sa.text(
    "INSERT INTO approvals (version_id, decision, actor, reason, target_stage, review_round, at) "
    "SELECT v.id, :decision, :actor, 'written around the API', :target, v.review_round, CURRENT_TIMESTAMP "
    "FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = :name AND v.version = :version"
)


def _insider_decision(
    reg: Registry, actor: str, *, decision: str = "approve", target: str = "production", version: int = 1
) -> None:
    with reg.db.engine.begin() as conn:
        inserted = conn.execute(
            _INSIDER_DECISION,
            {"decision": decision, "actor": actor, "target": target, "name": "churn", "version": version},
        )
        assert inserted.rowcount == 1


def _staged(reg: Registry, artifact: Path, by: str = "alice") -> int:
    v = reg.register("churn", artifact, actor=by)
    reg.transition("churn", v.version, "staging", actor=by)
    return v.version


def _promotion_approvers(reg: Registry, version: int) -> list[str]:
    """The approvers the promotion counted, as its audit event records them."""
    promoted = [e for e in reg.audit_log("churn") if e.action == "version.promoted" and e.version == version]
    assert promoted, f"churn/{version} was never promoted"
    return promoted[-1].payload["approved_by"]


def _policy_registry(backend_url: str, tmp_path: Path, policy: dict) -> Registry:
    """A registry on ``backend_url`` with ``policy`` put in force (the way an admin changes it)."""
    reg = Registry(url=backend_url, artifact_root=str(tmp_path / "art"))
    reg.set_policy(Policy.from_dict(policy), actor="admin")
    return reg


# --- approvals counted at the production check --------------------------------------------


def test_registrants_own_approval_written_by_sql_does_not_count(registry: Registry, artifact: Path) -> None:
    _staged(registry, artifact)
    _insider_decision(registry, "alice")  # alice registered churn/1
    with pytest.raises(ApprovalRequired, match="other than the registrant alice; it has none"):
        registry.transition("churn", 1, "production", actor="carol")
    assert registry.get_version("churn", 1).stage == Stage.STAGING
    registry.approve("churn", 1, actor="bob")
    assert registry.transition("churn", 1, "production", actor="carol").stage == Stage.PRODUCTION
    assert _promotion_approvers(registry, 1) == ["bob"]


def test_registrants_approval_counts_when_separation_of_duties_is_off(
    backend_url: str, tmp_path: Path, artifact: Path
) -> None:
    reg = _policy_registry(backend_url, tmp_path, {"separation_of_duties": False})
    try:
        _staged(reg, artifact)
        reg.approve("churn", 1, actor="alice")
        assert reg.transition("churn", 1, "production", actor="alice").stage == Stage.PRODUCTION
        assert _promotion_approvers(reg, 1) == ["alice"]
    finally:
        reg.close()


def test_duplicate_approvals_by_one_actor_count_once(
    backend_url: str, tmp_path: Path, artifact: Path
) -> None:
    reg = _policy_registry(backend_url, tmp_path, {"stages": {"production": {"approvals": 2}}})
    try:
        _staged(reg, artifact)
        reg.approve("churn", 1, actor="bob")
        _insider_decision(reg, "bob")
        _insider_decision(reg, "bob")
        with pytest.raises(ApprovalRequired, match=r"needs 2 approval\(s\).*it has 1 \(bob\)"):
            reg.transition("churn", 1, "production", actor="carol")
        reg.approve("churn", 1, actor="dana")
        assert reg.transition("churn", 1, "production", actor="carol").stage == Stage.PRODUCTION
        assert _promotion_approvers(reg, 1) == ["bob", "dana"]
    finally:
        reg.close()


def test_rows_that_are_not_current_approvals_do_not_count(
    backend_url: str, tmp_path: Path, artifact: Path
) -> None:
    policy = {"stages": {"production": {"approvals": 1, "approvers": ["bob", "dana"]}}}
    reg = _policy_registry(backend_url, tmp_path, policy)
    try:
        _staged(reg, artifact)
        _insider_decision(reg, "dana", decision="reject")  # a rejection is not an approval
        _insider_decision(reg, "mallory")  # not on the approver list
        _insider_decision(reg, "dana", target="staging")  # a decision for another stage
        with pytest.raises(ApprovalRequired, match="it has none"):
            reg.transition("churn", 1, "production", actor="carol")
        reg.approve("churn", 1, actor="bob")
        reg.transition("churn", 1, "development", actor="carol")  # a new review round
        reg.transition("churn", 1, "staging", actor="carol")
        with pytest.raises(ApprovalRequired, match="it has none"):
            reg.transition("churn", 1, "production", actor="carol")
        reg.approve("churn", 1, actor="dana")
        assert reg.transition("churn", 1, "production", actor="carol").stage == Stage.PRODUCTION
        assert _promotion_approvers(reg, 1) == ["dana"]
    finally:
        reg.close()


def test_required_gate_evidence_decides_entry(backend_url: str, tmp_path: Path, artifact: Path) -> None:
    policy = {"stages": {"production": {"approvals": 1, "gates": ["data", "fairness"]}}}
    reg = _policy_registry(backend_url, tmp_path, policy)
    try:
        _staged(reg, artifact)
        reg.approve("churn", 1, actor="bob")
        reg.add_evidence("churn", 1, gate="data", passed=True, actor="ci")
        reg.add_evidence("churn", 1, gate="other", passed=False, actor="ci")  # not required, still failed
        with pytest.raises(GateFailed, match="failed: other;.*missing: fairness"):
            reg.transition("churn", 1, "production", actor="carol")
        reg.add_evidence("churn", 1, gate="other", passed=True, actor="ci")
        reg.add_evidence("churn", 1, gate="fairness", passed=False, actor="ci")
        with pytest.raises(GateFailed, match="failed: fairness") as err:
            reg.transition("churn", 1, "production", actor="carol")
        assert "missing" not in str(err.value) and "other" not in str(err.value)
        reg.add_evidence("churn", 1, gate="fairness", passed=True, actor="ci")  # the latest counts
        assert reg.transition("churn", 1, "production", actor="carol").stage == Stage.PRODUCTION
    finally:
        reg.close()


@pytest.mark.parametrize("other", ["ci-2", "admin", "ＣＩ-2"])
def test_a_second_evaluator_cannot_overwrite_a_failed_gate(
    backend_url: str, tmp_path: Path, artifact: Path, other: str
) -> None:
    """A pass by anyone but the evaluator that recorded the failure leaves the failure standing."""
    reg = _policy_registry(backend_url, tmp_path, {"stages": {"production": {"approvals": 1}}})
    try:
        _staged(reg, artifact)
        reg.approve("churn", 1, actor="bob")
        reg.add_evidence("churn", 1, gate="drift", passed=False, actor="ci")
        reg.add_evidence("churn", 1, gate="drift", passed=True, actor=other)
        before = len(reg.audit_log())
        with pytest.raises(GateFailed, match=rf"failed: drift.*a later pass by {other} does not clear a failure ci recorded"):
            reg.transition("churn", 1, "production", actor="carol")
        assert len(reg.audit_log()) == before and reg.get_version("churn", 1).stage == Stage.STAGING
        reg.add_evidence("churn", 1, gate="drift", passed=True, actor="ci")  # the failing evaluator re-runs
        assert reg.transition("churn", 1, "production", actor="carol").stage == Stage.PRODUCTION
    finally:
        reg.close()


def test_a_rollback_does_not_count_a_typed_name_once_the_policy_wants_authenticated_approvals(
    backend_url: str, tmp_path: Path, artifact: Path
) -> None:
    """v1 went live on a name typed into a form while typed names counted; once the policy wants
    authenticated approvals, a rollback may not restore it on that name."""
    reg = _policy_registry(backend_url, tmp_path, {"authenticated_approvals": False})
    try:
        _staged(reg, artifact)
        reg.approve("churn", 1, claimed_by="carol")
        reg.transition("churn", 1, "production", actor="ops")
        _staged(reg, artifact)
        reg.approve("churn", 2, actor="dave")
        reg.transition("churn", 2, "production", actor="ops")
        reg.set_policy(Policy.from_dict({"authenticated_approvals": True}), actor="admin")
        before = len(reg.audit_log())
        with pytest.raises(RollbackRefused, match=r"version 1: the current policy needs 1 approval\(s\) and its promotion had 0"):
            reg.rollback("churn", reason="v2 misbehaves", actor="ops")
        assert len(reg.audit_log()) == before and reg.resolve("churn@production").version == 2
    finally:
        reg.close()


# --- the audit chain ----------------------------------------------------------------------


@pytest.fixture
def chain(registry: Registry, artifact: Path) -> Registry:
    for i in range(3):
        registry.register("churn", artifact, actor=f"user{i}")
    registry.set_alias("churn", "champion", 2, actor="ops")
    assert registry.verify_audit().ok
    return registry


def _event_hash(prev_hash: str, event) -> str:  # type: ignore[no-untyped-def]
    body = event.model_dump(mode="json", exclude={"hash", "prev_hash"})
    body["at"] = event.at.isoformat(timespec="microseconds")
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(body)).hexdigest()


def test_rewritten_last_event_with_recomputed_hash_fails_verify(chain: Registry) -> None:
    last = chain.audit_log()[-1]
    assert _event_hash(last.prev_hash, last) == last.hash  # the forger's formula is the real one
    forged = last.model_copy(update={"actor": "mallory"})
    with chain.db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_events SET actor = 'mallory', hash = :h WHERE seq = :s"),
            {"h": _event_hash(last.prev_hash, forged), "s": last.seq},
        )
        head = conn.execute(sa.text("SELECT seq FROM audit_head")).scalar_one()
    assert head == last.seq  # the head's seq still matches; only its hash can tell
    report = chain.verify_audit()
    assert not report.ok
    assert report.first_bad_seq == last.seq
    assert "head" in (report.problem or "")


@pytest.mark.parametrize("which", ["middle", "last"])
def test_edited_prev_hash_fails_verify(chain: Registry, which: str) -> None:
    events = chain.audit_log()
    target = events[1] if which == "middle" else events[-1]
    with chain.db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_events SET prev_hash = :p WHERE seq = :s"),
            {"p": "f" * 64, "s": target.seq},
        )
    report = chain.verify_audit()
    assert not report.ok
    assert report.first_bad_seq == target.seq
    assert "prev_hash" in (report.problem or "")


# --- the model cache ------------------------------------------------------------------------


def _fitted(seed: int) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    return LogisticRegression().fit(x, y)


def test_tampered_cache_file_is_never_loaded(registry: Registry, tmp_path: Path) -> None:
    genuine, other = _fitted(1), _fitted(2)
    v = registry.register_model("churn", genuine, actor="alice")
    cache = tmp_path / "cache"
    first = registry.load_model("churn/1", cache_dir=cache)
    np.testing.assert_array_equal(first.coef_, genuine.coef_)
    cached = cache / f"{v.artifact.sha256}.skops"
    assert cached.is_file()
    # Swap in another valid model file: only re-hashing the cached file can notice.
    serialization.save(other, cached)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() != v.artifact.sha256
    again = registry.load_model("churn/1", cache_dir=cache)
    np.testing.assert_array_equal(again.coef_, genuine.coef_)
    assert not np.array_equal(again.coef_, other.coef_)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == v.artifact.sha256


def test_a_verified_cached_file_serves_without_the_store(registry: Registry, tmp_path: Path) -> None:
    genuine = _fitted(1)
    v = registry.register_model("churn", genuine, actor="alice")
    cache = tmp_path / "cache"
    registry.load_model("churn/1", cache_dir=cache)
    Path(v.artifact.uri.removeprefix("file://")).unlink()  # the store lost the blob
    np.testing.assert_array_equal(registry.load_model("churn/1", cache_dir=cache).coef_, genuine.coef_)
    with pytest.raises(ArtifactNotFound):
        registry.load_model("churn/1")  # without the cache, the loss shows


def test_tampered_cache_and_store_raise_digest_mismatch(registry: Registry, tmp_path: Path) -> None:
    v = registry.register_model("churn", _fitted(1), actor="alice")
    cache = tmp_path / "cache"
    registry.load_model("churn/1", cache_dir=cache)
    cached = cache / f"{v.artifact.sha256}.skops"
    blob = Path(v.artifact.uri.removeprefix("file://"))
    assert blob.is_file()
    tampered = bytearray(cached.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    cached.write_bytes(bytes(tampered))
    blob.chmod(0o644)
    blob.write_bytes(bytes(tampered))
    with pytest.raises(DigestMismatch):
        registry.load_model("churn/1", cache_dir=cache)


# --- the policy: what each stage needs, and policy files refused naming the field -------------


def test_stage_defaults_need_approval_only_for_production() -> None:
    policy = Policy()
    assert policy.rule(Stage.PRODUCTION).approvals == 1
    assert policy.rule(Stage.STAGING).approvals == 0
    assert policy.rule(Stage.ARCHIVED).approvals == 0
    listed = Policy.from_dict({"stages": {"staging": {"gates": ["data"]}, "production": {"gates": ["data"]}}})
    assert listed.rule(Stage.STAGING).approvals == 0 and listed.rule(Stage.STAGING).gates == ["data"]
    assert listed.rule(Stage.PRODUCTION).approvals == 1


def test_policy_mapping_errors_name_the_field() -> None:
    from registry.errors import PolicyError

    with pytest.raises(PolicyError) as err:
        Policy.from_dict({"drift": {"act": -1}})
    assert err.value.field == "drift.act"
    assert str(err.value).startswith("policy: drift.act: ")
    with pytest.raises(PolicyError) as err:
        Policy.from_dict([1, 2])  # type: ignore[arg-type]
    assert err.value.field == "policy" and str(err.value).startswith("policy: policy: ")


def test_policy_files_refused_naming_the_file_and_field(tmp_path: Path) -> None:
    from registry.errors import PolicyError

    assert Policy.load(None) == Policy() and Policy.load("") == Policy()

    def refused(path: Path) -> PolicyError:
        with pytest.raises(PolicyError) as err:
            Policy.load(path)
        return err.value

    err = refused(tmp_path)
    assert (str(err), err.field) == (f"policy {tmp_path}: not a regular file", "policy")
    missing = tmp_path / "missing.toml"
    err = refused(missing)
    assert (str(err), err.field) == (f"policy {missing}: cannot read: No such file or directory", "policy")
    latin = tmp_path / "latin.yaml"
    raw = b"approval_timeout_seconds: 5 # caf\xe9\n"
    latin.write_bytes(raw)
    err = refused(latin)
    assert err.field == "policy"
    assert str(err) == f"policy {latin}: not UTF-8 text (byte 0xe9 at offset {raw.index(0xE9)})"
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[stages\n")
    err = refused(bad_toml)
    assert err.field == "policy" and str(err).startswith(f"policy {bad_toml}: not valid toml: ")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("stages: [\n")
    err = refused(bad_yaml)
    assert err.field == "policy" and str(err).startswith(f"policy {bad_yaml}: not valid yaml: ")
    out_of_range = tmp_path / "range.yaml"
    out_of_range.write_text("approval_timeout_seconds: 0\n")
    err = refused(out_of_range)
    assert err.field == "approval_timeout_seconds"
    assert str(err).startswith(f"{out_of_range}: approval_timeout_seconds: ")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert Policy.load(empty) == Policy()


# --- refusals name the version and say exactly which rule refused -------------------------------


def _refusal(call) -> Exception:  # type: ignore[no-untyped-def]
    from registry.errors import Refused

    with pytest.raises(Refused) as err:
        call()
    return err.value


def test_decision_refusals_name_model_version_and_rule(
    backend_url: str, tmp_path: Path, artifact: Path
) -> None:
    reg = _policy_registry(backend_url, tmp_path, {"stages": {"production": {"approvers": ["bob", "dana"]}}})
    try:
        reg.register("churn", artifact, actor="alice")  # churn/1 stays in development
        err = _refusal(lambda: reg.approve("churn", 1, actor="bob"))
        assert str(err) == (
            "churn/1 is in development; decisions for production are taken while it is in "
            "a stage that may move to production"
        )
        assert (err.model, err.version) == ("churn", 1)
        reg.transition("churn", 1, "staging", actor="alice")
        err = _refusal(lambda: reg.approve("churn", 1, actor="alice"))
        assert str(err) == "alice registered churn/1 and may not approve it (separation of duties)"
        assert (err.model, err.version) == ("churn", 1)
        err = _refusal(lambda: reg.approve("churn", 1, actor="mallory"))
        assert str(err) == "mallory is not an approver for production; the policy allows bob, dana"
        assert (err.model, err.version) == ("churn", 1)
        reg.approve("churn", 1, actor="bob")
        err = _refusal(lambda: reg.approve("churn", 1, actor="bob"))
        assert str(err) == "bob has already decided on churn/1 in this review; approvers must be distinct"
        assert (err.model, err.version) == ("churn", 1)
        reg.transition("churn", 1, "production", actor="carol")
        err = _refusal(lambda: reg.approve("churn", 1, actor="dana"))
        assert str(err) == (
            "churn/1 is in production; approvals and rejections are for versions under review "
            "(development or staging); use transition or rollback"
        )
        assert (err.model, err.version) == ("churn", 1)
    finally:
        reg.close()


def test_an_empty_approver_list_allows_nobody(backend_url: str, tmp_path: Path, artifact: Path) -> None:
    reg = _policy_registry(backend_url, tmp_path, {"stages": {"production": {"approvers": []}}})
    try:
        _staged(reg, artifact)
        err = _refusal(lambda: reg.approve("churn", 1, actor="bob"))
        assert str(err) == "bob is not an approver for production; the policy allows nobody"
    finally:
        reg.close()


def test_entry_refusals_name_model_version_and_every_problem(
    backend_url: str, tmp_path: Path, artifact: Path
) -> None:
    policy = {
        "stages": {"production": {"approvals": 2, "approvers": ["bob", "dana"], "gates": ["a", "b", "c"]}}
    }
    reg = _policy_registry(backend_url, tmp_path, policy)
    try:
        _staged(reg, artifact)
        _insider_decision(reg, "mallory")  # first in the round, and not on the list
        reg.approve("churn", 1, actor="bob")
        err = _refusal(lambda: reg.transition("churn", 1, "production", actor="carol"))
        assert isinstance(err, ApprovalRequired) and (err.model, err.version) == ("churn", 1)
        assert str(err).endswith("it has 1 (bob)")
        reg.approve("churn", 1, actor="dana")
        reg.add_evidence("churn", 1, gate="a", passed=False, actor="ci")
        reg.add_evidence("churn", 1, gate="b", passed=False, actor="ci")
        err = _refusal(lambda: reg.transition("churn", 1, "production", actor="carol"))
        assert isinstance(err, GateFailed) and (err.model, err.version) == ("churn", 1)
        assert str(err) == (
            "churn/1 cannot enter production: gates failed: a, b; an approver may waive one with "
            "`govflow waive`; missing: c"
        )
        assert _pass_gates_and_promote(reg, ["a", "b", "c"]) == ["bob", "dana"]
    finally:
        reg.close()


def _pass_gates_and_promote(reg: Registry, gates: list[str]) -> list[str]:
    for gate in gates:
        reg.add_evidence("churn", 1, gate=gate, passed=True, actor="ci")
    reg.transition("churn", 1, "production", actor="carol")
    return _promotion_approvers(reg, 1)


def test_evidence_of_another_version_does_not_count(backend_url: str, tmp_path: Path, artifact: Path) -> None:
    reg = _policy_registry(backend_url, tmp_path, {"stages": {"production": {"gates": ["data"]}}})
    try:
        _staged(reg, artifact)
        reg.add_evidence("churn", 1, gate="data", passed=True, actor="ci")
        _staged(reg, artifact)
        reg.approve("churn", 2, actor="bob")
        err = _refusal(lambda: reg.transition("churn", 2, "production", actor="carol"))
        assert str(err) == "churn/2 cannot enter production: gates missing: data"
    finally:
        reg.close()


# --- rollback: what may be restored ----------------------------------------------------------


def _to_production(reg: Registry, version: int) -> None:
    reg.transition("churn", version, "staging", actor="carol")
    reg.approve("churn", version, actor="bob")
    reg.transition("churn", version, "production", actor="carol")


def test_rollback_skips_a_version_rejected_after_it_left_production(
    registry: Registry, artifact: Path
) -> None:
    for _ in range(2):
        registry.register("churn", artifact, actor="alice")
    _to_production(registry, 1)
    _to_production(registry, 2)  # churn/1 leaves production
    registry.transition("churn", 1, "staging", actor="carol")
    registry.reject("churn", 1, reason="leaks labels", actor="dana")
    registry.transition("churn", 1, "archived", actor="carol")
    err = _refusal(lambda: registry.rollback("churn", reason="drift", actor="ops"))
    assert str(err) == (
        "churn/2: no earlier production version may be restored "
        "(skipped version 1: dana rejected it after it left production)"
    )
    assert (err.model, err.version) == ("churn", 2)
    assert registry.resolve("churn@production").version == 2


def test_a_review_after_leaving_production_that_is_not_a_rejection_keeps_it_restorable(
    registry: Registry, artifact: Path
) -> None:
    for _ in range(2):
        registry.register("churn", artifact, actor="alice")
    _to_production(registry, 1)
    _to_production(registry, 2)
    registry.transition("churn", 1, "staging", actor="carol")
    registry.approve("churn", 1, actor="erin")  # an approval, not a rejection
    registry.transition("churn", 1, "archived", actor="carol")
    result = registry.rollback("churn", reason="drift", actor="ops")
    assert (result.demoted, result.restored) == (2, 1)


def test_a_rejection_before_the_last_time_it_left_production_is_forgiven(
    registry: Registry, artifact: Path
) -> None:
    for _ in range(3):
        registry.register("churn", artifact, actor="alice")
    _to_production(registry, 1)
    _to_production(registry, 2)  # 1 leaves production the first time
    registry.transition("churn", 1, "staging", actor="carol")
    registry.reject("churn", 1, reason="not yet", actor="dana")  # back to development
    registry.transition("churn", 1, "staging", actor="carol")
    registry.approve("churn", 1, actor="bob")
    registry.transition("churn", 1, "production", actor="carol")  # 1 is back; 2 archived
    _to_production(registry, 3)  # 1 leaves production the second time
    result = registry.rollback("churn", reason="drift", actor="ops")
    assert (result.demoted, result.restored) == (3, 1)


def test_rollback_lists_each_skipped_version_once(registry: Registry, artifact: Path) -> None:
    for _ in range(2):
        registry.register("churn", artifact, actor="alice")
    _to_production(registry, 1)
    _to_production(registry, 2)
    registry.rollback("churn", reason="bad", actor="ops")  # 2 rolled back, 1 restored
    registry.transition("churn", 2, "staging", actor="carol")
    registry.approve("churn", 2, actor="erin")
    registry.transition("churn", 2, "production", actor="carol")  # 2 back by fresh approval
    registry.rollback("churn", reason="bad again", actor="ops")  # 1 restored again, 2 rolled back
    err = _refusal(lambda: registry.rollback("churn", reason="third", actor="ops"))
    assert str(err) == (
        "churn/1: no earlier production version may be restored (skipped version 2: it was rolled back)"
    )
    assert (err.model, err.version) == ("churn", 1)


def test_rollback_without_production_names_the_model(registry: Registry, artifact: Path) -> None:
    registry.register("churn", artifact, actor="alice")
    err = _refusal(lambda: registry.rollback("churn", reason="drift", actor="ops"))
    assert str(err) == "churn has no version in production to roll back"
    assert err.model == "churn"


def test_rollback_target_must_satisfy_the_current_policy(
    backend_url: str, tmp_path: Path, artifact: Path
) -> None:
    reg = _policy_registry(backend_url, tmp_path, {})
    try:
        for _ in range(2):
            reg.register("churn", artifact, actor="alice")
        _to_production(reg, 1)
        reg.transition("churn", 2, "staging", actor="carol")
        reg.approve("churn", 2, actor="bob")
        reg.approve("churn", 2, actor="dana")
        reg.transition("churn", 2, "production", actor="carol")
    finally:
        reg.close()
    stricter = _policy_registry(backend_url, tmp_path, {"stages": {"production": {"approvals": 2}}})
    try:
        err = _refusal(lambda: stricter.rollback("churn", reason="drift", actor="ops"))
        assert str(err) == (
            "churn/2: no earlier production version may be restored (skipped version 1: "
            "the current policy needs 2 approval(s) and its promotion had 1)"
        )
    finally:
        stricter.close()
    gated = _policy_registry(backend_url, tmp_path, {"stages": {"production": {"gates": ["data"]}}})
    try:
        err = _refusal(lambda: gated.rollback("churn", reason="drift", actor="ops"))
        assert str(err) == (
            "churn/2: no earlier production version may be restored (skipped version 1: "
            "the current policy's required gates are not met (missing: data))"
        )
        gated.add_evidence("churn", 1, gate="data", passed=True, actor="ci")
        assert gated.rollback("churn", reason="drift", actor="ops").restored == 1
    finally:
        gated.close()


def test_the_lifecycle_tables_match_the_replayed_log(registry: Registry, artifact: Path) -> None:
    for _ in range(3):
        registry.register("churn", artifact, actor="alice")
    _to_production(registry, 1)
    _to_production(registry, 2)
    registry.set_alias("churn", "champion", 1, actor="ops")
    registry.set_alias("churn", "champion", 3, actor="ops")
    registry.remove_alias("churn", "champion", actor="ops")
    registry.transition("churn", 3, "staging", actor="carol")
    registry.reject("churn", 3, reason="too slow", actor="dana")
    registry.rollback("churn", reason="drift", actor="ops")
    report = registry.verify_audit()
    assert report.ok, report.problem


# --- verify: what it reports ----------------------------------------------------------------


def test_verify_counts_every_event_and_names_the_problem(chain: Registry) -> None:
    events = chain.audit_log()
    report = chain.verify_audit()
    assert (report.ok, report.events, report.first_bad_seq, report.problem) == (True, len(events), None, None)
    _edit_event(chain, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    report = chain.verify_audit()
    assert (report.ok, report.events, report.first_bad_seq, report.scope) == (False, 2, 2, "chain")
    assert report.problem == "hash does not match the event's content"


def test_edited_prev_hash_is_named_as_such(chain: Registry) -> None:
    _edit_event(chain, f"UPDATE audit_events SET prev_hash = '{'e' * 64}' WHERE seq = 3")
    report = chain.verify_audit()
    assert (report.first_bad_seq, report.events, report.scope) == (3, 3, "chain")
    assert report.problem == "prev_hash does not match the previous event's hash"


def test_head_mismatch_names_both_ends(chain: Registry) -> None:
    last = chain.audit_log()[-1]
    forged = "d" * 64
    _edit_event(chain, f"UPDATE audit_head SET hash = '{forged}'")
    report = chain.verify_audit()
    assert report.problem == (
        f"chain ends at seq {last.seq} ({last.hash[:12]}), head says {last.seq} ({forged[:12]})"
    )


def _edit_event(reg: Registry, statement: str, **params: object) -> None:
    with reg.db.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_payload_stored_in_another_json_layout_still_verifies(chain: Registry) -> None:
    import json

    event = chain.audit_log()[1]
    relaid = json.dumps(event.payload, indent=2, ensure_ascii=True)  # same JSON, other text
    assert relaid != canonical(event.payload).decode()
    _edit_event(chain, "UPDATE audit_events SET payload = :p WHERE seq = :s", p=relaid, s=event.seq)
    report = chain.verify_audit()
    assert report.ok and report.events == len(chain.audit_log()), report.problem
    assert report.noncanonical == 1  # verified through the canonical re-encoding, and counted
    changed = dict(event.payload, forged=True)
    _edit_event(
        chain,
        "UPDATE audit_events SET payload = :p WHERE seq = :s",
        p=json.dumps(changed, indent=2),
        s=event.seq,
    )
    report = chain.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, event.seq)
    assert report.problem == "hash does not match the event's content"


def test_a_payload_that_is_not_json_is_reported_not_raised(chain: Registry) -> None:
    if chain.db.dialect != "sqlite":
        pytest.skip("PostgreSQL refuses text that is not JSON in a JSON column")
    _edit_event(chain, "UPDATE audit_events SET payload = 'not json' WHERE seq = 2")
    report = chain.verify_audit()
    assert (report.ok, report.first_bad_seq, report.events) == (False, 2, 2)
    assert (report.problem or "").startswith("event cannot be canonicalized: ")


def test_a_self_consistent_forged_event_fails_replay(chain: Registry) -> None:
    import json

    last = chain.audit_log()[-1]
    body = {
        "seq": last.seq + 1,
        "at": last.at.isoformat(timespec="microseconds"),
        "actor": "mallory",
        "db_user": None,
        "action": "version.promoted",
        "model": "churn",
        "version": 7,
        "payload": {"to": "production"},
    }
    forged = hashlib.sha256(last.hash.encode() + canonical(body)).hexdigest()
    at = last.at.replace(tzinfo=None) if chain.db.dialect == "sqlite" else last.at
    _edit_event(
        chain,
        "INSERT INTO audit_events (seq, at, actor, action, model, version, payload, prev_hash, hash) "
        "VALUES (:s, :at, 'mallory', 'version.promoted', 'churn', 7, :p, :ph, :h)",
        s=last.seq + 1,
        at=at,
        p=json.dumps(body["payload"]),
        ph=last.hash,
        h=forged,
    )
    _edit_event(chain, "UPDATE audit_head SET seq = :s, hash = :h", s=last.seq + 1, h=forged)
    report = chain.verify_audit()
    assert (report.ok, report.first_bad_seq, report.events) == (False, last.seq + 1, last.seq + 1)
    assert (report.problem or "").startswith(f"event {last.seq + 1} (version.promoted) cannot be replayed")


def test_rows_written_around_the_api_fail_the_state_check(registry: Registry, artifact: Path) -> None:
    from registry.errors import AuditChainBroken

    _staged(registry, artifact)
    events = len(registry.audit_log())
    assert registry.verify_audit().ok
    _insider_decision(registry, "bob")
    report = registry.verify_audit()
    assert (report.ok, report.events, report.scope, report.first_bad_seq) == (False, events, "state", None)
    assert "approvals" in (report.problem or "") and "bob" in (report.problem or "")
    with pytest.raises(AuditChainBroken):
        registry.verify_audit(raise_on_error=True)


def test_record_refuses_every_reserved_namespace_and_action(registry: Registry) -> None:
    from registry.errors import InvalidInput

    for action in (
        "version.promoted",
        "alias.set",
        "policy.recorded",
        "model.rolled_back",
        "model.registered",
        "model.deployed",
        "model.pickle_loaded",
        "approval.granted",
        "user.added",
        "evidence.waived",
    ):
        with pytest.raises(InvalidInput) as err:
            registry.record(action, actor="ops")
        assert err.value.field == "action"
        assert (
            str(err.value)
            == f"action: {action} is in the registry's own namespace; custom events use custom."
        )
    event = registry.record(
        "custom.deployed", model="churn", version=3, actor="ops", payload={"to": "serving"}
    )
    payload = dict(event.payload)
    assert payload.pop("via")["channel"] == "api"
    assert (event.action, event.model, event.version, payload) == ("custom.deployed", "churn", 3, {"to": "serving"})
    assert registry.audit_log()[-1] == event and registry.verify_audit().ok


# --- pickle stays behind two opt-ins, and each refusal says which one is missing ----------------


def test_pickle_refusals_name_the_missing_opt_in(backend_url: str, tmp_path: Path) -> None:
    from registry.errors import UnsafeModel

    plain = Registry(url=backend_url, artifact_root=str(tmp_path / "art"), policy=Policy())
    try:
        with pytest.raises(UnsafeModel) as err:
            plain.register_model("churn", _fitted(1), actor="alice", allow_pickle=True)
        assert str(err.value) == (
            "raw pickle runs arbitrary code; it needs both opt-ins, missing: policy allow_pickle"
        )
        assert (err.value.model, err.value.version, err.value.reason) == ("churn", None, "pickle")
    finally:
        plain.close()
    opted = _policy_registry(backend_url, tmp_path, {"allow_pickle": True})
    try:
        v = opted.register_model("churn", _fitted(1), actor="alice", allow_pickle=True)
        assert (v.version, v.registered_by, v.artifact.format) == (1, "alice", "pickle")
        with pytest.raises(UnsafeModel) as err:
            opted.load_model("churn/1")
        assert str(err.value) == (
            "churn/1: raw pickle runs arbitrary code; it needs both opt-ins, missing: allow_pickle=True"
        )
        assert (err.value.model, err.value.version, err.value.reason) == ("churn", 1, "pickle")
    finally:
        opted.close()


def test_joblib_files_load_with_joblib(backend_url: str, tmp_path: Path) -> None:
    import joblib

    model = _fitted(3)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    reg = Registry(url=backend_url, artifact_root=str(tmp_path / "art"), policy=Policy(allow_pickle=True))
    try:
        v = reg.register("churn", path, actor="alice", artifact_format="joblib")
        loaded = reg.load_model("churn/1", allow_pickle=True, actor="ops")
        np.testing.assert_array_equal(loaded.coef_, model.coef_)
        opted_in = [e for e in reg.audit_log() if e.action == "model.pickle_loaded"]
        assert [(e.actor, e.model, e.version, e.payload) for e in opted_in] == [
            (
                "ops",
                "churn",
                1,
                {
                    "ref": "churn/1",
                    "sha256": v.artifact.sha256,
                    "format": "joblib",
                    "via": {"channel": "api"},
                },
            )
        ]
    finally:
        reg.close()


def test_register_model_records_the_given_registrant(registry: Registry) -> None:
    v = registry.register_model("churn", _fitted(1), actor="alice", metrics={"auc": 0.7})
    assert (v.registered_by, v.metrics, v.artifact.format) == ("alice", {"auc": 0.7}, "skops")


# --- serialization refusals name the field -------------------------------------------------------


class _Homemade:
    """A type outside the skops allowlist."""

    def __init__(self) -> None:
        self.weights = [1.0, 2.0]


def test_saving_refuses_what_cannot_be_written(tmp_path: Path) -> None:
    from registry.errors import InvalidInput

    with open(tmp_path / "handle.txt", "w") as handle:
        for fmt, start in (
            ("skops", "estimator: skops cannot serialize TextIOWrapper: "),
            ("pickle", "estimator: cannot pickle TextIOWrapper: "),
        ):
            with pytest.raises(InvalidInput) as err:
                serialization.save(handle, tmp_path / f"m.{fmt}", fmt)
            assert err.value.field == "estimator" and str(err.value).startswith(start)
    with pytest.raises(InvalidInput) as err:
        serialization.save(_fitted(1), tmp_path / "m.onnx", "onnx")
    assert (err.value.field, str(err.value)) == ("format", "format: 'onnx' is not one of skops, pickle")
    with pytest.raises(InvalidInput) as err:
        serialization.check_loadable("onnx")
    assert err.value.field == "artifact_format"
    assert str(err.value) == "format: 'onnx' is not a model format that can be loaded (skops, pickle, joblib)"


def test_loading_pickle_directly_still_needs_the_callers_opt_in(tmp_path: Path) -> None:
    import pickle

    from registry.errors import UnsafeModel

    path = tmp_path / "m.pickle"
    model = _fitted(1)
    assert serialization.save(model, path, "pickle") == "pickle"
    assert pickle.loads(path.read_bytes()).coef_.tolist() == model.coef_.tolist()
    with pytest.raises(UnsafeModel, match="missing: allow_pickle=True$"):
        serialization.load(path, "pickle", policy=Policy(allow_pickle=True))
    loaded = serialization.load(path, "pickle", policy=Policy(allow_pickle=True), allow_pickle=True)
    np.testing.assert_array_equal(loaded.coef_, model.coef_)


def test_untrusted_skops_types_are_named_with_the_way_out(tmp_path: Path) -> None:
    from registry.errors import UnsafeModel

    path = tmp_path / "homemade.skops"
    serialization.save(_Homemade(), path)
    name = f"{_Homemade.__module__}.{_Homemade.__qualname__}"
    with pytest.raises(UnsafeModel) as err:
        serialization.load(path, "skops", policy=Policy())
    assert str(err.value) == (
        f"homemade.skops: untrusted types {name}; add them to the policy's trusted_types "
        "only if you trust their code"
    )
    assert err.value.reason == "untrusted types" and err.value.fields["types"] == [name]
    loaded = serialization.load(path, "skops", policy=Policy(trusted_types=[name]))
    assert loaded.weights == [1.0, 2.0]


def test_event_body_is_what_the_chain_hashes(chain: Registry) -> None:
    from registry import audit

    with chain.db.engine.connect() as conn:
        rows = list(audit.iter_events(conn))
    prev = audit.GENESIS
    for row in rows:
        body = audit.event_body(row)
        assert set(body) == {"seq", "at", "actor", "db_user", "action", "model", "version", "payload"}
        assert (body["seq"], body["actor"], body["action"], body["payload"]) == (
            row.seq,
            row.actor,
            row.action,
            row.payload,
        )
        assert audit.link_hash(prev, body) == row.hash
        prev = row.hash


# --- rollback: more of what may be restored -------------------------------------------------------


def test_a_lone_production_version_has_nothing_to_restore(registry: Registry, artifact: Path) -> None:
    registry.register("churn", artifact, actor="alice")
    registry.register("other", artifact, actor="alice")
    registry.register("other", artifact, actor="alice")
    _to_production(registry, 1)
    for v in (1, 2):  # another model's production history is not churn's
        registry.transition("other", v, "staging", actor="carol")
        registry.approve("other", v, actor="bob")
        registry.transition("other", v, "production", actor="carol")
    err = _refusal(lambda: registry.rollback("churn", reason="drift", actor="ops"))
    assert str(err) == "churn/1: no earlier production version may be restored"


def test_versions_that_never_reached_production_are_not_candidates(
    registry: Registry, artifact: Path
) -> None:
    for _ in range(3):
        registry.register("churn", artifact, actor="alice")
    registry.transition("churn", 2, "archived", actor="carol")  # never in production
    _to_production(registry, 1)
    _to_production(registry, 3)
    registry.transition("churn", 1, "staging", actor="carol")
    registry.reject("churn", 1, reason="stale", actor="dana")
    registry.transition("churn", 1, "archived", actor="carol")
    err = _refusal(lambda: registry.rollback("churn", reason="drift", actor="ops"))
    assert str(err) == (
        "churn/3: no earlier production version may be restored "
        "(skipped version 1: dana rejected it after it left production)"
    )


def test_every_skipped_version_is_listed(registry: Registry, artifact: Path) -> None:
    for _ in range(3):
        registry.register("churn", artifact, actor="alice")
    _to_production(registry, 1)
    _to_production(registry, 2)
    _to_production(registry, 3)
    for v, who in ((1, "dana"), (2, "erin")):
        registry.transition("churn", v, "staging", actor="carol")
        registry.reject("churn", v, reason="stale", actor=who)
        registry.transition("churn", v, "archived", actor="carol")
    err = _refusal(lambda: registry.rollback("churn", reason="drift", actor="ops"))
    assert str(err) == (
        "churn/3: no earlier production version may be restored (skipped version 2: erin rejected it "
        "after it left production; version 1: dana rejected it after it left production)"
    )


def test_a_rejection_is_measured_from_when_that_version_left_production(
    registry: Registry, artifact: Path
) -> None:
    for _ in range(3):
        registry.register("churn", artifact, actor="alice")
    _to_production(registry, 1)
    _to_production(registry, 2)  # 1 leaves production
    registry.transition("churn", 1, "staging", actor="carol")
    registry.reject("churn", 1, reason="stale", actor="dana")  # after 1 left
    registry.transition("churn", 1, "archived", actor="carol")
    _to_production(registry, 3)  # 2 leaves production, later than the rejection of 1
    assert registry.rollback("churn", reason="bad", actor="ops").restored == 2  # 3 rolled back
    err = _refusal(lambda: registry.rollback("churn", reason="worse", actor="ops"))
    assert str(err) == (
        "churn/2: no earlier production version may be restored (skipped version 3: it was rolled back; "
        "version 1: dana rejected it after it left production)"
    )


def test_a_restored_version_keeps_the_approvals_of_its_promotion(registry: Registry, artifact: Path) -> None:
    for _ in range(3):
        registry.register("churn", artifact, actor="alice")
    _to_production(registry, 1)
    _to_production(registry, 2)
    registry.rollback("churn", reason="bad", actor="ops")  # 1 back by rollback, not promotion
    _to_production(registry, 3)
    assert registry.rollback("churn", reason="bad", actor="ops").restored == 1


def test_rollback_under_the_current_approver_list(backend_url: str, tmp_path: Path, artifact: Path) -> None:
    reg = _policy_registry(backend_url, tmp_path, {})
    try:
        for _ in range(2):
            reg.register("churn", artifact, actor="alice")
        _to_production(reg, 1)  # approved by bob
        _to_production(reg, 2)
    finally:
        reg.close()
    listed = _policy_registry(backend_url, tmp_path, {"stages": {"production": {"approvers": ["dana"]}}})
    try:
        err = _refusal(lambda: listed.rollback("churn", reason="drift", actor="ops"))
        assert str(err).endswith(
            "(skipped version 1: the current policy needs 1 approval(s) and its promotion had 0)"
        )
    finally:
        listed.close()


def test_rollback_with_zero_required_approvals(backend_url: str, tmp_path: Path, artifact: Path) -> None:
    free = _policy_registry(backend_url, tmp_path, {"stages": {"production": {"approvals": 0}}})
    try:
        for v in (1, 2):
            free.register("churn", artifact, actor="alice")
            free.transition("churn", v, "staging", actor="carol")
            free.transition("churn", v, "production", actor="carol")  # no approval needed
        assert free.rollback("churn", reason="drift", actor="ops").restored == 1
    finally:
        free.close()


def test_rollback_names_every_gate_problem(backend_url: str, tmp_path: Path, artifact: Path) -> None:
    reg = _policy_registry(backend_url, tmp_path, {})
    try:
        for _ in range(2):
            reg.register("churn", artifact, actor="alice")
        _to_production(reg, 1)
        reg.add_evidence("churn", 1, gate="data", passed=False, actor="ci")
        _to_production(reg, 2)
    finally:
        reg.close()
    gated = _policy_registry(
        backend_url, tmp_path, {"stages": {"production": {"gates": ["data", "fairness"]}}}
    )
    try:
        err = _refusal(lambda: gated.rollback("churn", reason="drift", actor="ops"))
        assert str(err).endswith(
            "(skipped version 1: the current policy's required gates are not met "
            "(failed: data; missing: fairness))"
        )
    finally:
        gated.close()
