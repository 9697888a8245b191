"""Roles, form approvals, approval codes and the audit's ``via``, attacked from inside the team.

Each test runs as authenticated principals (``identity.acting``), the way the registry server
runs a request, and checks that every refusal writes nothing (issue 10, parts 3, 4, 6 and 7).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from registry import Policy, Registry, Stage, identity
from registry.errors import (
    ApprovalRequired,
    Forbidden,
    InvalidInput,
    Refused,
    SeparationOfDuties,
)
from tests.registry.test_policy_store import Clock, freeze

pytestmark = pytest.mark.embedded_only("acts as principals through identity.acting, in this process")

BOB = ("bob", "pipeline")  # registers churn/1
CI = ("ci", "pipeline")  # another pipeline: relays forms
CAROL = ("carol", "approver")
DAVE = ("dave", "approver")
OLGA = ("olga", "operator")
READER = ("rita", "reader")
ROOT = ("root", "admin")


def _as(who: tuple[str, ...], *, channel: str = "api", on_behalf_of: str | None = None):
    name, *roles = who
    caller = identity.Caller(
        channel=channel, principal=name, roles=frozenset(roles), on_behalf_of=on_behalf_of
    )
    return identity.acting(caller)


def _count(reg: Registry) -> int:
    return len(reg.audit_log())


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return freeze(monkeypatch)


@pytest.fixture
def team(backend_url: str, tmp_path: Path, artifact: Path):
    """A registry under ``authenticated_approvals`` (server mode) where bob staged churn/1."""
    reg = Registry(
        url=backend_url, artifact_root=str(tmp_path / "art"), policy=Policy(authenticated_approvals=True)
    )
    with _as(BOB):
        reg.register("churn", artifact)
        reg.transition("churn", 1, "staging")
    yield reg
    reg.close()


@contextmanager
def refused(
    reg: Registry, who: tuple[str, ...], error: type[Exception], match: str, **acting
) -> Iterator[None]:
    """The block, run as ``who``, is refused with ``error`` and leaves the audit log as it was."""
    before = _count(reg)
    with _as(who, **acting), pytest.raises(error, match=match):
        yield
    assert _count(reg) == before


# --- roles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "action", "need"),
    [
        (READER, "register", "pipeline"),
        (CAROL, "register", "pipeline"),
        (CAROL, "evidence", "pipeline"),
        (OLGA, "evidence", "pipeline"),
        (BOB, "approve", "approver"),
        (OLGA, "approve", "approver"),
        (BOB, "promote", "operator"),
        (CAROL, "promote", "operator"),
        (BOB, "alias", "operator"),
        (READER, "reject", "approver"),
        (CI, "waive", "approver"),
        (BOB, "rollback", "operator"),
        (CAROL, "deploy", "operator"),
        (READER, "record", "operator or pipeline"),
    ],
)
def test_each_role_is_refused_what_it_may_not_do(
    team: Registry, artifact: Path, who: tuple[str, ...], action: str, need: str
) -> None:
    calls = {
        "register": lambda: team.register("churn", artifact),
        "evidence": lambda: team.add_evidence("churn", 1, gate="accuracy", passed=True),
        "approve": lambda: team.approve("churn", 1),
        "promote": lambda: team.transition("churn", 1, "production"),
        "alias": lambda: team.set_alias("churn", "champion", 1),
        "reject": lambda: team.reject("churn", 1, reason="no"),
        "waive": lambda: team.waive("churn", 1, "accuracy", reason="fine"),
        "rollback": lambda: team.rollback("churn", reason="bad"),
        "deploy": lambda: team.record_deployment("churn", 1, target="k8s", ok=True),
        "record": lambda: team.record("custom.note"),
    }
    with refused(team, who, Forbidden, rf"^{who[0]} may not .*: it needs the {need} role"):
        calls[action]()
    assert team.get_version("churn", 1).stage == Stage.STAGING
    assert team.verify_audit().ok


def test_each_role_does_its_own_part(team: Registry, artifact: Path) -> None:
    with _as(BOB):
        team.add_evidence("churn", 1, gate="accuracy", passed=True)
    with _as(CAROL):
        assert team.approve("churn", 1).actor == "carol"
    with _as(OLGA):
        with refused(team, OLGA, Forbidden, "olga may not approve"):
            team.approve("churn", 1)
        assert team.transition("churn", 1, "production").stage == Stage.PRODUCTION
        team.set_alias("churn", "champion", 1)
        team.record_deployment("churn", 1, target="k8s", ok=True)
    with _as(BOB):
        team.register("churn", artifact)
        team.transition("churn", 2, "staging")
    with _as(DAVE):
        team.approve("churn", 2)
    with _as(OLGA):
        team.transition("churn", 2, "production")
        result = team.rollback("churn", reason="v2 misbehaves")
    assert (result.demoted, result.restored, result.actor) == (2, 1, "olga")
    assert team.verify_audit().ok


def test_a_pipeline_rejects_only_its_own_staged_version(team: Registry, artifact: Path) -> None:
    with _as(CI):
        team.register("churn", artifact)
        team.transition("churn", 2, "staging")
    mine_only = "^ci may reject only its own staged versions; churn/1 is staging, registered by bob"
    with refused(team, CI, Forbidden, mine_only):
        team.reject("churn", 1, reason="not mine")
    with _as(BOB):
        rejected = team.reject("churn", 1, reason="retrain first")
    assert (rejected.actor, team.get_version("churn", 1).stage) == ("bob", Stage.DEVELOPMENT)
    with refused(team, CI, Forbidden, "churn/1 is development"):
        team.reject("churn", 1, reason="again")


@pytest.mark.parametrize(
    ("actor", "error"),
    [("bob", Forbidden), ("dave", Forbidden), ("caro1", Forbidden), ("carol\u200b", InvalidInput)],
)
def test_a_principal_cannot_act_under_another_name(
    team: Registry, actor: str, error: type[Exception]
) -> None:
    with refused(team, CAROL, error, "actor"):
        team.approve("churn", 1, actor=actor)
    assert team.get_version("churn", 1).approvals == []


@pytest.mark.parametrize("spelled", ["CAROL", "Carol", "ｃａｒｏｌ", " carol "])
def test_the_own_name_in_any_spelling_is_the_principal(team: Registry, spelled: str) -> None:
    with _as(CAROL):
        decision = team.approve("churn", 1, actor=spelled)
    assert decision.actor == "carol"
    assert team.audit_log()[-1].actor == "carol"


@pytest.mark.parametrize("spelled", ["bob", "Bob", "ｂｏｂ", "BOB"])
def test_the_registrant_with_an_approver_role_cannot_approve(team: Registry, spelled: str) -> None:
    with refused(
        team, (spelled, "pipeline", "approver"), SeparationOfDuties, "registered churn/1 and may not approve"
    ):
        team.approve("churn", 1)


def test_an_admin_acting_for_someone_is_audited_with_both_names(team: Registry) -> None:
    with _as(ROOT, on_behalf_of="carol"):
        assert team.approve("churn", 1).actor == "carol"
        with pytest.raises(Forbidden, match="authenticated as carol, not root"):
            team.approve("churn", 1, actor="root")
    event = team.audit_log()[-1]
    assert (event.action, event.actor) == ("version.approved", "carol")
    assert event.payload["via"] == {"channel": "api", "principal": "root", "on_behalf_of": "carol"}


# --- record(), deployments and the audit's via ---------------------------------------------------


RESERVED = "version.approved approval.code_issued alias.set evidence.waived policy.set model.deployed"


@pytest.mark.parametrize("action", [*RESERVED.split(), "model.rolled_back", "user.added", "version.x"])
def test_record_refuses_the_registrys_own_namespaces(team: Registry, action: str) -> None:
    for who in (OLGA, ROOT):
        with refused(team, who, InvalidInput, f"^action: {action} is in the registry's own namespace"):
            team.record(action, model="churn", version=1, payload={"forged": True})
    with _as(OLGA):
        event = team.record("custom.x", model="churn", version=1, payload={"note": action})
    assert (event.action, event.actor) == ("custom.x", "olga")
    assert event.payload["via"] == {"channel": "api", "principal": "olga"}


@pytest.mark.parametrize(("ok", "action"), [(True, "model.deployed"), (False, "model.deploy_failed")])
def test_record_deployment_needs_an_operator(team: Registry, ok: bool, action: str) -> None:
    for who in (BOB, CAROL, READER):
        with refused(team, who, Forbidden, "record a deployment"):
            team.record_deployment("churn", 1, target="k8s", ok=ok)
    with _as(OLGA):
        event = team.record_deployment("churn", 1, target="k8s", ok=ok, payload={"replicas": 2})
    assert (event.action, event.actor) == (action, "olga")
    assert (event.payload["target"], event.payload["replicas"]) == ("k8s", 2)
    with _as(OLGA), pytest.raises(InvalidInput, match="^ok: 'yes' must be true or false"):
        team.record_deployment("churn", 1, target="k8s", ok="yes")  # type: ignore[arg-type]


def test_every_event_records_its_channel(team: Registry, artifact: Path) -> None:
    with _as(BOB, channel="cli"):
        team.register("churn", artifact)
    with _as(CI, channel="prefect-form"):
        team.approve("churn", 1, claimed_by="dave")
    with identity.acting(channel="flow"):  # embedded: no principal
        team.add_evidence("churn", 2, gate="accuracy", passed=True, actor="ci")
    with (
        pytest.raises(InvalidInput, match="^channel: 'carrier-pigeon' is not one of"),
        identity.acting(channel="carrier-pigeon"),
    ):
        pass
    events = team.audit_log()
    assert all(isinstance(e.payload.get("via", {}).get("channel"), str) for e in events), [
        e.action for e in events if "channel" not in e.payload.get("via", {})
    ]
    vias = [e.payload["via"] for e in events[-3:]]
    assert vias == [
        {"channel": "cli", "principal": "bob"},
        {"channel": "prefect-form", "principal": "ci"},
        {"channel": "flow"},
    ]


# --- form approvals -------------------------------------------------------------------------------


def test_a_typed_name_counts_only_without_authenticated_approvals(registry: Registry, artifact: Path) -> None:
    registry.register("churn", artifact, actor="bob")
    registry.transition("churn", 1, "staging", actor="bob")
    with identity.acting(channel="prefect-form"):
        decision = registry.approve("churn", 1, claimed_by="dave")
    assert (decision.actor, decision.claimed_by, decision.channel) == ("dave", "dave", "prefect-form")
    assert registry.get_version("churn", 1).approvals[0].claimed_by == "dave"
    registry.transition("churn", 1, "production", actor="olga")
    assert registry.audit_log()[-1].payload["approved_by"] == ["dave"]


def test_a_typed_name_does_not_count_under_authenticated_approvals(team: Registry) -> None:
    with _as(CI, channel="prefect-form"):
        team.approve("churn", 1, claimed_by="dave")
    with refused(
        team, OLGA, ApprovalRequired, r"it has none; not counted, typed into a form, not authenticated: dave$"
    ):
        team.transition("churn", 1, "production")
    with _as(CAROL):
        team.approve("churn", 1)
    with _as(OLGA):
        team.transition("churn", 1, "production")
    assert team.audit_log()[-1].payload["approved_by"] == ["carol"]


@pytest.mark.parametrize("typed", ["bob", "Bob", "ｂｏｂ"])
def test_a_typed_name_of_the_registrant_is_refused(team: Registry, typed: str) -> None:
    with refused(
        team, CI, SeparationOfDuties, "registered churn/1 and may not approve", channel="prefect-form"
    ):
        team.approve("churn", 1, claimed_by=typed)


@pytest.mark.parametrize("who", [CI, CAROL])
def test_a_typed_reject_always_counts(team: Registry, who: tuple[str, ...]) -> None:
    with _as(who, channel="prefect-form"):
        decision = team.reject("churn", 1, reason="looks wrong", claimed_by="dave")
    assert (decision.actor, decision.claimed_by) == ("dave", "dave")
    assert team.get_version("churn", 1).stage == Stage.DEVELOPMENT
    assert team.audit_log()[-1].payload["moved_to"] == "development"


def test_only_a_relay_may_pass_on_a_typed_name(team: Registry) -> None:
    for who in (READER, OLGA):
        with refused(team, who, Forbidden, "relay a decision typed into a form"):
            team.approve("churn", 1, claimed_by="dave")
    with refused(team, CI, InvalidInput, "^claimed_by: .* contains U\\+200B"):
        team.approve("churn", 1, claimed_by="da\u200bve")


# --- approval codes -------------------------------------------------------------------------------


def _code(reg: Registry, who: tuple[str, ...] = CAROL, version: int = 1, **kw) -> str:
    with _as(who):
        return reg.approval_code("churn", version, **kw)


def test_a_code_carries_the_approvers_identity_through_a_relay(team: Registry) -> None:
    code = _code(team)
    issued = team.audit_log()[-1]
    assert issued.action == "approval.code_issued" and code not in str(issued.payload)
    with _as(CI, channel="prefect-form"):
        decision = team.approve("churn", 1, code=code)
    assert (decision.actor, decision.claimed_by, decision.channel) == ("carol", None, "prefect-form")
    event = team.audit_log()[-1]
    assert event.actor == "carol" and event.payload["via"] == {"channel": "prefect-form", "principal": "ci"}
    with refused(team, CI, Refused, "^code: already used"):
        team.approve("churn", 1, code=code)
    with _as(OLGA):
        team.transition("churn", 1, "production")
    assert team.audit_log()[-1].payload["approved_by"] == ["carol"]
    assert team.verify_audit().ok


@pytest.mark.parametrize(
    ("code", "error", "match"),
    [
        ("GF-1234", InvalidInput, "^code: not an approval code"),
        ("", InvalidInput, "^code: not an approval code"),
        (12345, InvalidInput, "^code: not an approval code"),
        ("GF-deadbeef-AAAAAAAAAAAAAAAA", Refused, "^code: unknown approval code"),
    ],
)
def test_a_malformed_or_unknown_code_is_refused(
    team: Registry, code, error: type[Exception], match: str
) -> None:
    with refused(team, CI, error, match):
        team.approve("churn", 1, code=code)


def test_a_code_with_a_guessed_secret_is_refused(team: Registry) -> None:
    real = _code(team)
    forged = real[:-1] + ("A" if real[-1] != "A" else "B")
    with refused(team, CI, Refused, "^code: unknown approval code"):
        team.approve("churn", 1, code=forged)
    with _as(CI):
        assert team.approve("churn", 1, code=real).actor == "carol"  # the real one was not burnt


def test_a_code_is_bound_to_its_version_and_review(team: Registry, artifact: Path) -> None:
    with _as(BOB):
        team.register("churn", artifact)
        team.transition("churn", 2, "staging")
    code = _code(team, version=2)
    with refused(team, CI, Refused, "^code: issued for another version, not churn/1"):
        team.approve("churn", 1, code=code)
    with _as(OLGA):
        team.transition("churn", 2, "development")
    with _as(BOB):
        team.transition("churn", 2, "staging")
    with refused(team, CI, Refused, "^code: issued in an earlier review of churn/2"):
        team.approve("churn", 2, code=code)


def test_a_code_expires(team: Registry, clock: Clock) -> None:
    code = _code(team, valid_for=60)
    clock.advance(60)
    with refused(team, CI, Refused, "^code: expired at"):
        team.approve("churn", 1, code=code)


def test_a_code_redeemed_just_in_time_counts(team: Registry, clock: Clock) -> None:
    code = _code(team, valid_for=60)
    clock.advance(59)
    with _as(CI):
        assert team.approve("churn", 1, code=code).actor == "carol"


@pytest.mark.parametrize(
    ("who", "error", "match"),
    [
        (("bob", "pipeline", "approver"), SeparationOfDuties, "registered churn/1 and may not approve"),
        (CI, Forbidden, "^ci may not ask for an approval code"),
        (OLGA, Forbidden, "^olga may not ask for an approval code"),
    ],
)
def test_who_cannot_get_a_code(
    team: Registry, who: tuple[str, ...], error: type[Exception], match: str
) -> None:
    with refused(team, who, error, match):
        team.approval_code("churn", 1)


@pytest.mark.parametrize("valid_for", [0, 29, 3601, "600", 600.0, True])
def test_a_code_lifetime_must_be_minutes(team: Registry, valid_for) -> None:
    with refused(team, CAROL, InvalidInput, "^valid_for: "):
        team.approval_code("churn", 1, valid_for=valid_for)


def test_a_code_and_a_typed_name_together_are_refused(team: Registry) -> None:
    code = _code(team)
    with refused(team, CI, InvalidInput, "^code: give an approval code or a typed name, not both"):
        team.approve("churn", 1, code=code, claimed_by="dave")
    with refused(team, READER, Forbidden, "redeem an approval code"):
        team.approve("churn", 1, code=code)
    with _as(CI):
        team.approve("churn", 1, code=code)  # still good after both refusals


def test_a_revoked_approvers_code_no_longer_counts(team: Registry) -> None:
    team.add_user("carol", ["approver"])
    code = _code(team)
    team.revoke_user("carol")
    with refused(team, CI, Refused, "carol"):
        team.approve("churn", 1, code=code)
