"""The policy kept in the registry, attacked from inside the team (issue 10, part 5 and 6).

A client cannot swap in a laxer policy, only an admin may change it, every decision names the
policy in force, and edits of the policy tables around the API are caught. Also the stricter
defaults: a failed gate blocks production until an audited waiver, and approvals expire.
"""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry import Policy, Registry, Stage, identity, policy_record
from registry.db.tables import policies, policy_history, waivers
from registry.errors import (
    ApprovalRequired,
    Forbidden,
    GateFailed,
    IntegrityError,
    InvalidInput,
    PolicyError,
    Refused,
    SeparationOfDuties,
    UnsafeModel,
)
from registry.policy_record import digest

EMBEDDED = pytest.mark.embedded_only("drives identity, the clock or its own registries in this process")

LAX = Policy.from_dict({"separation_of_duties": False, "stages": {"production": {"approvals": 0}}})


class Clock:
    """The registry's clock, frozen and moved forward by the test (never backward)."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def freeze(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Put every registry module on a frozen clock (they import ``now`` by name)."""
    fake = Clock()
    for module in ("base", "registry", "decisions", "annotations", "governance", "auth.admin"):
        monkeypatch.setattr(f"registry.{module}.now", fake)
    return fake


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return freeze(monkeypatch)


def _as(principal: str, *roles: str) -> identity.Caller:
    return identity.Caller(channel="api", principal=principal, roles=frozenset(roles))


def _count(reg: Registry) -> int:
    return len(reg.audit_log())


def _staged(reg: Registry, artifact: Path, *, failed: str | None = None) -> int:
    """bob registers and stages a version, with a failed result for gate ``failed``."""
    v = reg.register("churn", artifact, actor="bob").version
    if failed:
        reg.add_evidence("churn", v, gate=failed, passed=False, value=0.6, threshold=0.8, actor="bob")
    reg.transition("churn", v, "staging", actor="bob")
    return v


@pytest.fixture
def opener(backend_url: str, tmp_path: Path):
    """``opener(**kw)`` opens a Registry on the test's database; all are closed at the end."""
    opened: list[Registry] = []

    def open_one(**kw) -> Registry:
        opened.append(Registry(url=backend_url, artifact_root=str(tmp_path / "artifacts"), **kw))
        return opened[-1]

    yield open_one
    for reg in opened:
        reg.close()


@pytest.fixture
def reopen(opener):
    """``reopen(reg, policy)``: an admin puts ``policy`` in force through ``reg``; returns a client
    that brings no policy of its own (the fixture's registry was opened with the defaults)."""

    def put_in_force(reg: Registry, policy: Policy) -> Registry:
        reg.set_policy(policy, reason="tightened", actor="root")
        return opener()

    return put_in_force


# --- a client cannot bring its own policy ----------------------------------------------------


@pytest.mark.parametrize("how", ["argument", "GOVFLOW_POLICY"])
@pytest.mark.parametrize("given", [LAX, Policy(approval_valid_for=30)], ids=["laxer", "stricter"])
def test_a_different_policy_is_refused_and_writes_nothing(
    opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, given: Policy
) -> None:
    reg = opener(policy=Policy())
    sha = reg.policy_info().sha256  # seeds the empty registry
    before = _count(reg)
    kw: dict = {"policy": given}
    if how == "GOVFLOW_POLICY":
        path = tmp_path / "given.yaml"
        path.write_text(json.dumps(given.model_dump(mode="json")))  # YAML is a superset of JSON
        monkeypatch.setenv("GOVFLOW_POLICY", str(path))
        kw = {}
    source = "policy" if how == "argument" else how
    with pytest.raises(PolicyError, match=f"^{source}: differs from .* use `govflow policy set`$") as err:
        opener(**kw)
    assert err.value.field == "policy"
    assert (_count(reg), reg.policy_info().sha256, len(reg.policy_history())) == (before, sha, 1)
    assert reg.policy.rule(Stage.PRODUCTION).approvals == 1


def test_a_different_policy_opened_without_create_decides_nothing(opener, artifact: Path) -> None:
    first = opener(policy=Policy())
    first.register("churn", artifact, actor="bob")
    first.policy_info()
    lax = opener(policy=LAX, create=False)
    before = _count(first)
    with pytest.raises(PolicyError, match="^policy: differs from .* use `govflow policy set`$"):
        lax.transition("churn", 1, "staging", actor="bob")
    with pytest.raises(PolicyError, match="use `govflow policy set`"):
        lax.policy  # noqa: B018  (the property refuses too)
    assert _count(first) == before


def test_a_caller_policy_does_not_rule_a_registry_that_holds_versions(opener, tmp_path: Path) -> None:
    """The issue's pickle attack: versions registered, no decision yet, then a caller that allows pickle."""
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    team = opener(policy=Policy())
    team.register("churn", path, actor="bob", artifact_format="pickle")
    lax = Policy(allow_pickle=True)
    with pytest.raises((PolicyError, UnsafeModel)):
        opener(policy=lax).load_model("churn/1", allow_pickle=True)


def test_the_same_policy_again_or_none_is_accepted(opener, tmp_path: Path, monkeypatch) -> None:
    strict = Policy(approval_valid_for="12h", waivers=False)
    first = opener(policy=strict)
    first.policy_info()
    before = _count(first)
    path = tmp_path / "same.toml"
    path.write_text('approval_valid_for = "720m"\nwaivers = false\n')  # the same rules, spelled otherwise
    monkeypatch.setenv("GOVFLOW_POLICY", str(path))
    opener()
    monkeypatch.delenv("GOVFLOW_POLICY")
    again = opener()  # no policy given: the stored one rules
    assert again.policy == strict and again.policy.approval_valid_for == 43_200
    assert _count(first) == before


def test_govflow_policy_seeds_an_empty_registry_with_an_audited_event(
    opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "team.toml"
    path.write_text("authenticated_approvals = true\n[stages.production]\napprovals = 2\n")
    monkeypatch.setenv("GOVFLOW_POLICY", str(path))
    monkeypatch.setenv("GOVFLOW_ACTOR", "root")
    reg = opener()
    info = reg.policy_info()
    assert info.sha256 == digest(Policy.load(path))[0]
    assert (info.set_by, info.reason) == ("root", "seeded from GOVFLOW_POLICY")
    assert reg.policy.authenticated_approvals and reg.policy.rule(Stage.PRODUCTION).approvals == 2
    (seed,) = [e for e in reg.audit_log() if e.payload.get("sha256") == info.sha256]
    assert (seed.action, seed.actor, seed.payload["in_force"]) == ("policy.recorded", "root", True)
    assert reg.verify_audit().ok


# --- only an admin changes it, and every decision names it ------------------------------------


@EMBEDDED
@pytest.mark.parametrize("roles", [("reader",), ("pipeline",), ("approver",), ("operator", "pipeline")])
def test_set_policy_by_a_non_admin_is_forbidden(registry: Registry, roles: tuple[str, ...]) -> None:
    sha = registry.policy_info().sha256
    before = _count(registry)
    with (
        identity.acting(_as("mallory", *roles)),
        pytest.raises(Forbidden, match="^mallory may not change the policy") as err,
    ):
        registry.set_policy(LAX, reason="faster releases")
    assert err.value.field == "role"
    assert (_count(registry), registry.policy_info().sha256) == (before, sha)


@EMBEDDED
def test_set_policy_by_admin_is_recorded_and_named_by_every_later_decision(
    registry: Registry, artifact: Path, tmp_path: Path, opener
) -> None:
    old = registry.policy_info()
    path = tmp_path / "two.yaml"
    path.write_text("stages:\n  production:\n    approvals: 2\n")
    with identity.acting(_as("root", "admin")):
        info = registry.set_policy(path, reason="two approvers for production")
        with pytest.raises(Forbidden, match="actor: authenticated as root, not mallory"):
            registry.set_policy(Policy(), actor="mallory")
    assert info.sha256 == digest(Policy.load(path))[0] != old.sha256
    assert (info.set_by, info.reason) == ("root", "two approvers for production")
    assert [h.sha256 for h in registry.policy_history()] == [old.sha256, info.sha256]
    assert registry.policy_info() == info and registry.policy_document(info.sha256) == info.document
    set_event = registry.audit_log()[-1]
    assert (set_event.action, set_event.payload["previous"]) == ("policy.set", old.sha256)
    assert set_event.payload["sha256"] == info.sha256
    client = registry
    registry = opener()  # a client that brings no policy of its own
    for v in (1, 2):
        _staged(registry, artifact)
        registry.approve("churn", v, actor="carol")
        with pytest.raises(ApprovalRequired, match=r"needs 2 approval\(s\)"):
            registry.transition("churn", v, "production", actor="olga")
        registry.approve("churn", v, actor="dave")
        registry.transition("churn", v, "production", actor="olga")
    registry.rollback("churn", reason="v2 misbehaves", actor="olga")
    decisions = [e for e in registry.audit_log("churn") if e.action != "version.registered"]
    assert {"version.approved", "version.promoted", "model.rolled_back"} <= {e.action for e in decisions}
    assert [e.action for e in decisions if e.payload["policy_sha256"] != info.sha256] == []
    assert registry.verify_audit().ok
    assert client.policy_info() == info


def test_the_registry_that_set_the_policy_keeps_deciding(registry: Registry, artifact: Path) -> None:
    """Opened with the defaults, then an admin's set_policy through it: its own change is no
    client-side policy, so its next decision is taken under the new policy, not refused."""
    info = registry.set_policy(Policy(approval_valid_for="1d"), reason="shorter reviews", actor="root")
    _staged(registry, artifact)
    registry.approve("churn", 1, actor="carol")
    assert registry.audit_log()[-1].payload["policy_sha256"] == info.sha256


@pytest.mark.parametrize(
    ("bad", "field"),
    [(None, "policy"), ("", "policy"), (42, "policy"), (["x"], "policy"), ({"approvals": 0}, "approvals")],
)
def test_set_policy_refuses_what_is_not_a_policy(registry: Registry, bad, field: str) -> None:
    before = _count(registry)
    with pytest.raises(InvalidInput) as err:
        registry.set_policy(bad, actor="root")
    assert err.value.field == field and str(err.value).count("\n") == 0
    assert _count(registry) == before


# --- edits of the policy tables around the API --------------------------------------------------


@EMBEDDED
def test_an_edited_stored_policy_is_never_decided_under_and_fails_verify(
    registry: Registry, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _staged(registry, artifact)
    registry.approve("churn", 1, actor="carol")  # this process has read the policy in force
    sha = registry.policy_info().sha256
    with registry.db.engine.begin() as conn:  # the edit says: no approvals, registrants may approve
        conn.execute(policies.update().where(policies.c.sha256 == sha).values(document=digest(LAX)[1]))
    before = _count(registry)
    with pytest.raises((IntegrityError, SeparationOfDuties)):
        registry.approve("churn", 1, actor="bob")
    with pytest.raises(IntegrityError):  # registration reads the policy in force too
        registry.register("churn", artifact, actor="bob")
    with pytest.raises(IntegrityError):
        registry.transition("churn", 1, "production", actor="olga")
    assert _count(registry) == before  # nothing written under the edit
    report = registry.verify_audit()
    assert not report.ok and report.scope == "state"
    assert f"policy {sha[:12]}: the stored document or its time differs from the log" in report.problem
    # A process that has not read the policy yet refuses to decide at all.
    monkeypatch.setattr(policy_record, "_PARSED", {})
    with pytest.raises(
        IntegrityError, match=f"^policy {sha[:12]}: the stored document does not hash to its sha256$"
    ):
        registry.approve("churn", 1, actor="dave")
    assert _count(registry) == before


def test_a_history_row_pointing_at_a_laxer_policy_fails_verify(registry: Registry, artifact: Path) -> None:
    strict = registry.policy_info()
    registry.set_policy(LAX, reason="trial", actor="root")
    registry.set_policy(Policy(), reason="trial over", actor="root")
    assert registry.verify_audit().ok
    with registry.db.engine.begin() as conn:
        conn.execute(
            policy_history.insert(),
            {"sha256": digest(LAX)[0], "set_by": "root", "set_at": datetime.now(UTC), "reason": "quietly"},
        )
    assert registry.policy_info().sha256 == digest(LAX)[0] != strict.sha256
    report = registry.verify_audit()
    assert not report.ok and report.scope == "state"
    assert "policy history entry 4 is sha256=" in report.problem
    assert report.problem.endswith("the log has none")


# --- failed gates block production under the default policy; waivers ----------------------------


def test_a_failed_gate_blocks_production_until_an_approver_waives_it(
    registry: Registry, artifact: Path
) -> None:
    assert registry.policy.rule(Stage.PRODUCTION).gates == []  # the default lists no gate
    _staged(registry, artifact, failed="fairness")
    registry.add_evidence("churn", 1, gate="accuracy", passed=True, actor="ci")
    registry.approve("churn", 1, actor="carol")
    with pytest.raises(
        GateFailed, match=r"churn/1 cannot enter production: gates failed: fairness; an approver may waive"
    ):
        registry.transition("churn", 1, "production", actor="olga")
    before = _count(registry)
    for spelled in ("bob", "Bob", "ｂｏｂ", "BOB"):
        with pytest.raises(SeparationOfDuties, match=f"^{spelled} registered churn/1 and may not waive"):
            registry.waive("churn", 1, "fairness", reason="mine is fine", actor=spelled)
    assert _count(registry) == before
    waiver = registry.waive("churn", 1, "fairness", reason="within the risk appetite", actor="carol")
    assert (waiver.gate, waiver.actor, waiver.reason) == ("fairness", "carol", "within the risk appetite")
    assert registry.get_version("churn", 1).waivers == [waiver]
    event = registry.audit_log()[-1]
    assert (event.action, event.actor, event.payload["gate"]) == ("evidence.waived", "carol", "fairness")
    assert event.payload["policy_sha256"] == registry.policy_info().sha256
    assert registry.transition("churn", 1, "production", actor="olga").stage == Stage.PRODUCTION
    assert registry.verify_audit().ok


def test_a_new_failed_result_after_the_waiver_blocks_again(registry: Registry, artifact: Path) -> None:
    _staged(registry, artifact, failed="fairness")
    registry.approve("churn", 1, actor="carol")
    registry.waive("churn", 1, "fairness", reason="accepted", actor="carol")
    registry.add_evidence("churn", 1, gate="fairness", passed=False, value=0.3, actor="ci")
    with pytest.raises(GateFailed, match="failed: fairness"):
        registry.transition("churn", 1, "production", actor="olga")
    registry.waive("churn", 1, "fairness", reason="the new result too", actor="dave")
    assert len(registry.get_version("churn", 1).waivers) == 2
    assert registry.transition("churn", 1, "production", actor="olga").stage == Stage.PRODUCTION


@pytest.mark.parametrize(
    ("gate", "passed", "message"),
    [
        ("fairness", True, "the latest fairness result passed; nothing to waive"),
        ("drift", None, "has no drift result to waive"),
        ("fairness", False, "the latest fairness result is already waived"),
    ],
)
def test_waivers_only_for_a_failed_unwaived_result(
    registry: Registry, artifact: Path, gate: str, passed: bool | None, message: str
) -> None:
    _staged(registry, artifact, failed="fairness")
    if passed:
        registry.add_evidence("churn", 1, gate="fairness", passed=True, actor="ci")
    elif passed is False:
        registry.waive("churn", 1, "fairness", reason="first", actor="carol")
    before = _count(registry)
    with pytest.raises(Refused, match=message):
        registry.waive("churn", 1, gate, reason="again", actor="dave")
    assert _count(registry) == before


@EMBEDDED
def test_a_policy_without_waivers_refuses_them_and_voids_old_ones(
    registry: Registry, artifact: Path, reopen
) -> None:
    _staged(registry, artifact, failed="fairness")
    registry.approve("churn", 1, actor="carol")
    registry.waive("churn", 1, "fairness", reason="accepted", actor="carol")
    registry = reopen(registry, Policy(waivers=False))
    with pytest.raises(GateFailed, match="failed: fairness; the policy forbids waivers"):
        registry.transition("churn", 1, "production", actor="olga")
    registry.add_evidence("churn", 1, gate="fairness", passed=False, actor="ci")
    with pytest.raises(Refused, match="the policy forbids waivers; churn/1 needs a passing fairness result"):
        registry.waive("churn", 1, "fairness", reason="please", actor="dave")


def test_a_waiver_written_around_the_api_fails_verify(registry: Registry, artifact: Path) -> None:
    _staged(registry, artifact, failed="fairness")
    with registry.db.engine.begin() as conn:
        vid, ev = conn.exec_driver_sql("SELECT version_id, id FROM evidence").one()
        conn.execute(
            waivers.insert(),
            dict(
                version_id=vid,
                gate="fairness",
                evidence_id=ev,
                actor="carol",
                reason="x",
                at=datetime.now(UTC),
            ),
        )
    report = registry.verify_audit()
    assert not report.ok and report.scope == "state"
    assert "churn/1: waivers entry 1 is gate=fairness, actor=carol" in report.problem


# --- approvals expire ---------------------------------------------------------------------------


@EMBEDDED
@pytest.mark.parametrize(("elapsed", "counts"), [(29, True), (30, True), (31, False), (86_400, False)])
def test_an_approval_older_than_approval_valid_for_does_not_count(
    registry: Registry, artifact: Path, clock: Clock, reopen, elapsed: int, counts: bool
) -> None:
    registry = reopen(registry, Policy(approval_valid_for="30s"))
    _staged(registry, artifact)
    registry.approve("churn", 1, actor="carol")
    clock.advance(elapsed)
    if counts:
        assert registry.transition("churn", 1, "production", actor="olga").stage == Stage.PRODUCTION
        return
    with pytest.raises(ApprovalRequired, match=r"it has none; not counted, expired: carol$"):
        registry.transition("churn", 1, "production", actor="olga")
    registry.approve("churn", 1, actor="dave")
    registry.transition("churn", 1, "production", actor="olga")
    promoted = registry.audit_log()[-1]
    assert promoted.payload["approved_by"] == ["dave"]
    assert registry.verify_audit().ok


@EMBEDDED
def test_an_approver_may_renew_an_expired_approval(
    registry: Registry, artifact: Path, clock: Clock, reopen
) -> None:
    """The refusal names carol's approval as expired; her fresh approval must then be possible."""
    registry = reopen(registry, Policy(approval_valid_for="30s"))
    _staged(registry, artifact)
    registry.approve("churn", 1, actor="carol")
    clock.advance(31)
    registry.approve("churn", 1, actor="carol", reason="still fine")
    registry.transition("churn", 1, "production", actor="olga")
    assert registry.audit_log()[-1].payload["approved_by"] == ["carol"]


@pytest.mark.parametrize("bad", [0, -5, "7x", "", True, 1.5, "1w"])
def test_approval_valid_for_must_be_a_positive_duration(bad) -> None:
    with pytest.raises(PolicyError, match="approval_valid_for") as err:
        Policy.from_dict({"approval_valid_for": bad})
    assert err.value.field == "approval_valid_for"
