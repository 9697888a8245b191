"""Controls under insider attack: rows written around the API must not satisfy the policy, and
edits to the audit chain or the model cache must be caught (DESIGN invariants 4, 5, 7).

Each test stands for a one-line break of a control that the rest of the suite once let through.
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
from registry.errors import ApprovalRequired, DigestMismatch, GateFailed

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
    return Registry(url=backend_url, artifact_root=str(tmp_path / "art"), policy=Policy.from_dict(policy))


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
        reg.add_evidence("churn", 1, gate="other", passed=False, actor="ci")  # not required
        with pytest.raises(GateFailed, match="missing: fairness") as err:
            reg.transition("churn", 1, "production", actor="carol")
        assert "failed" not in str(err.value)
        reg.add_evidence("churn", 1, gate="fairness", passed=False, actor="ci")
        with pytest.raises(GateFailed, match="failed: fairness") as err:
            reg.transition("churn", 1, "production", actor="carol")
        assert "missing" not in str(err.value)
        reg.add_evidence("churn", 1, gate="fairness", passed=True, actor="ci")  # the latest counts
        assert reg.transition("churn", 1, "production", actor="carol").stage == Stage.PRODUCTION
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
