"""Names that cannot impersonate (issue 19): one script per name, look-alikes are one person.

The skeletons are ICU's (UTS #39); the pairs below are what ICU answers, not what a list says.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from registry import Policy, Registry, Stage, identity, lifecycle, names
from registry.errors import (
    ApprovalRequired,
    GateFailed,
    InvalidInput,
    NotAnApprover,
    SeparationOfDuties,
)
from registry.validate import check_actor

# --- the rule itself ----------------------------------------------------------------------------

# (a, b): names a reader can take for one another; one is Latin, the other a look-alike.
ONE_PERSON = [
    ("carol", "cаrol"),  # Cyrillic а
    ("bob", "bοb"),  # Greek ο
    ("carol", "ꓚarol"),  # Lisu ꓚ
    ("dave", "Ꭰave"),  # Cherokee Ꭰ
    ("dave", "ԁave"),  # Cyrillic ԁ
    ("dave", "ԁаѵе"),  # all Cyrillic
    ("ci", "сі"),  # all Cyrillic
    ("bob", "ВОВ"),  # all Cyrillic capitals
    ("Bill", "BiIl"),  # capital I for small l
    ("carol", "caro1"),  # digit 1 for l
    ("churn", "chum"),  # rn for m
    ("ml", "m1"),
    ("prod", "pr0d"),  # digit 0 for o
    ("bob", "ＢＯＢ"),  # full width
    ("olga", "oIga"),
    ("alice", "ALICE"),  # case alone never makes a stranger
    ("lan", "Ian"),
]
# Distinct people whose names merely share a sound or a meaning, and near misses ICU keeps apart.
DISTINCT = [
    ("maria", "мария"),
    ("eleni", "ελένη"),
    ("carol", "carl"),
    ("dave", "dove"),
    ("ana", "anna"),
    ("ci", "c1"),
    ("rita", "rlta"),
    ("ian", "lan"),  # only a capital I looks like l
]


@pytest.mark.parametrize(("a", "b"), ONE_PERSON)
def test_look_alikes_share_a_skeleton(a: str, b: str) -> None:
    assert names.same_person(a, b) and names.same_person(b, a)
    spelled_apart = names.fold(a) != names.fold(b)  # ＢＯＢ is bob's own name, not a look-alike of it
    assert names.lookalike(b, ["someone", a]) == (a if spelled_apart else None)


@pytest.mark.parametrize(("a", "b"), DISTINCT)
def test_different_names_stay_different(a: str, b: str) -> None:
    assert not names.same_person(a, b)
    assert names.lookalike(b, [a]) is None


def test_the_skeleton_is_icus_case_insensitive_one() -> None:
    assert [names.skeleton(n) for n in ("cаrol", "ꓚarol", "ＣＡＲＯＬ", "caro1")] == ["carol"] * 4
    assert names.skeleton("m1") == names.skeleton("ml") == "rnl"  # ICU's prototype for m is rn


def test_the_same_name_is_not_a_look_alike_of_itself() -> None:
    assert names.lookalike("Carol", ["carol", "ｃａｒｏｌ"]) is None


MIXED = [
    ("cаrol", "mixes scripts (Cyrillic, Latin)"),
    ("bοb", "mixes scripts (Greek, Latin)"),
    ("ꓚarol", "mixes scripts (Latin, Lisu)"),
    ("Ꭰave", "mixes scripts (Cherokee, Latin)"),
    ("ԁave", "mixes scripts (Cyrillic, Latin)"),
    ("ciсі", "mixes scripts (Cyrillic, Latin)"),
    ("сi", "mixes scripts (Cyrillic, Latin)"),
    ("ab١", "mixes scripts (Arabic, Latin)"),  # an Arabic-Indic digit in a Latin name
    ("x1١", "mixes digits of different systems (1 ١)"),
    ("\u06611", "mixes digits of different systems (1 ١)"),
    ("a\u0301\u0301", "repeats an invisible combining mark"),
]
ONE_SCRIPT = [
    "carol",
    "мария",
    "ελένη",
    "たなか太郎",
    "山田タロウ",
    "김민준",
    "عمر",
    "josé",
    "ＢＯＢ",
    "сі",
    "ԁаѵе",
    "alice@example.com",
    "svc-ci_2",
    "bob smith",
    "٣٣",
]


@pytest.mark.parametrize(("name", "why"), MIXED)
def test_a_mixed_script_name_is_refused_in_one_line_naming_the_field(name: str, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_actor(name, "claimed_by")
    assert str(info.value) == f"claimed_by: {name!r} {why}" + (
        "; a name is written in one script" if "scripts" in why else ""
    )
    assert info.value.field == "claimed_by"


@pytest.mark.parametrize("name", ONE_SCRIPT)
def test_names_in_one_script_pass(name: str) -> None:
    assert check_actor(name) == name


def test_two_look_alike_approvals_count_as_one() -> None:
    """The rule replay judges the log with: carol and cаrol (a row from before names were checked)."""
    policy = Policy.from_dict({"stages": {"production": {"approvals": 2}}})
    row = SimpleNamespace(registered_by="bob")
    decisions = [("approve", "carol", None, None), ("approve", "cаrol", None, None)]
    assert lifecycle.counted_approvers(policy, row, Stage.PRODUCTION, decisions) == ["carol"]  # type: ignore[arg-type]
    assert (
        lifecycle.counted_approvers(  # type: ignore[arg-type]
            policy, SimpleNamespace(registered_by="ВОВ"), Stage.PRODUCTION, [("approve", "bob", None, None)]
        )
        == []
    )


# --- where names meet: the registry on SQLite, PostgreSQL and the server ----------------------


def _count(reg: Registry) -> int:
    return len(reg.audit_log())


@pytest.fixture
def staged(registry: Registry, artifact: Path) -> Registry:
    """churn/1 registered by ci and staged, under a policy wanting two approvers."""
    registry.set_policy(Policy.from_dict({"stages": {"production": {"approvals": 2}}}), actor="admin")
    registry.register("churn", artifact, actor="ci")
    registry.transition("churn", 1, "staging", actor="ci")
    return registry


def test_carol_and_a_cyrillic_carol_do_not_make_a_quorum_of_two(staged: Registry) -> None:
    staged.approve("churn", 1, actor="carol")
    before = _count(staged)
    with pytest.raises(InvalidInput, match=r"^actor: 'cаrol' mixes scripts \(Cyrillic, Latin\)"):
        staged.approve("churn", 1, actor="cаrol")
    with pytest.raises(ApprovalRequired):
        staged.transition("churn", 1, "production", actor="olga")
    assert _count(staged) == before
    assert [a.actor for a in staged.get_version("churn", 1).approvals] == ["carol"]


@pytest.mark.parametrize("twin", ["ԁаѵе", "ＤＡＶＥ"])
def test_a_whole_script_look_alike_is_the_same_approver(staged: Registry, twin: str) -> None:
    staged.approve("churn", 1, actor="dave")
    before = _count(staged)
    with pytest.raises(SeparationOfDuties, match="already decided on churn/1"):
        staged.approve("churn", 1, actor=twin)
    assert _count(staged) == before


def test_a_cyrillic_ci_is_the_registrant_ci(staged: Registry) -> None:
    before = _count(staged)
    with pytest.raises(
        SeparationOfDuties, match=r"^сі \(looks like ci\) registered churn/1 and may not approve"
    ):
        staged.approve("churn", 1, actor="сі")
    assert _count(staged) == before


def test_the_registrant_under_a_look_alike_cannot_waive_or_clear_its_failed_gate(
    staged: Registry,
) -> None:
    staged.add_evidence("churn", 1, gate="fairness", passed=False, actor="ci")
    staged.add_evidence("churn", 1, gate="fairness", passed=True, actor="сі")  # ignored: the registrant
    before = _count(staged)
    with pytest.raises(SeparationOfDuties, match=r"looks like ci\) registered churn/1 and may not waive"):
        staged.waive("churn", 1, "fairness", reason="fine", actor="сі")
    assert _count(staged) == before
    staged.approve("churn", 1, actor="carol")
    staged.approve("churn", 1, actor="dave")
    with pytest.raises(GateFailed, match="fairness"):
        staged.transition("churn", 1, "production", actor="olga")


def test_a_look_alike_of_a_listed_approver_is_not_on_the_list(registry: Registry, artifact: Path) -> None:
    registry.set_policy(Policy.from_dict({"stages": {"production": {"approvers": ["dave"]}}}), actor="admin")
    registry.register("churn", artifact, actor="ci")
    registry.transition("churn", 1, "staging", actor="ci")
    before = _count(registry)
    with pytest.raises(NotAnApprover):
        registry.approve("churn", 1, actor="ԁаѵе")
    assert _count(registry) == before
    assert registry.approve("churn", 1, actor="DAVE").actor == "DAVE"


@pytest.mark.parametrize(
    ("approvers", "why"),
    [(["dave", "cаrol"], "mixes scripts"), (["carol", "caro1"], "looks like the approver 'carol'")],
)
def test_an_approvers_list_takes_no_mixed_script_or_look_alike_entry(
    registry: Registry, approvers: list[str], why: str
) -> None:
    sha = registry.policy_info().sha256  # the first read may store the default policy
    before = (_count(registry), sha)
    with pytest.raises(InvalidInput, match=rf"^stages\.production\.approvers: .*{why}"):
        registry.set_policy({"stages": {"production": {"approvers": approvers}}}, actor="admin")
    assert (_count(registry), registry.policy_info().sha256) == before


@pytest.mark.parametrize(
    ("existing", "new"), [("churn", "chum"), ("ml", "m1"), ("credit-risk", "credit-rlsk")]
)
def test_a_model_name_that_looks_like_another_is_refused(
    registry: Registry, artifact: Path, existing: str, new: str
) -> None:
    registry.register(existing, artifact, actor="ci")
    before = _count(registry)
    if names.same_person(existing, new):
        with pytest.raises(InvalidInput, match=f"^name: '{new}' looks like the model '{existing}'"):
            registry.register(new, artifact, actor="ci")
        assert _count(registry) == before and [m.name for m in registry.models()] == [existing]
    else:  # ICU keeps i and l apart
        registry.register(new, artifact, actor="ci")


def test_an_alias_that_looks_like_another_is_refused(registry: Registry, artifact: Path) -> None:
    registry.register("churn", artifact, actor="ci")
    registry.set_alias("churn", "prod", 1, actor="olga")
    before = _count(registry)
    for alias, like in (("pr0d", "prod"), ("pr0duction", "production")):
        with pytest.raises(InvalidInput, match=f"^alias: '{alias}' looks like the alias '{like}'"):
            registry.set_alias("churn", alias, 1, actor="olga")
    assert _count(registry) == before
    registry.set_alias("churn", "prod", 1, actor="olga")  # the same alias again is fine
    registry.set_alias("churn", "canary", 1, actor="olga")


# --- principals and claimed names ----------------------------------------------------------------


@pytest.fixture
def team(backend_url: str, tmp_path: Path, artifact: Path):
    """Server-mode rules on each database: the pipeline ci staged churn/1."""
    reg = Registry(
        url=backend_url, artifact_root=str(tmp_path / "art"), policy=Policy(authenticated_approvals=True)
    )
    with identity.acting(identity.Caller(principal="ci", roles=frozenset({"pipeline"}))):
        reg.register("churn", artifact)
        reg.transition("churn", 1, "staging")
    yield reg
    reg.close()


@pytest.mark.parametrize(
    ("claimed", "error", "message"),
    [
        ("сi", InvalidInput, r"^claimed_by: 'сi' mixes scripts \(Cyrillic, Latin\)"),
        ("сі", SeparationOfDuties, r"^сі \(looks like ci\) registered churn/1 and may not approve"),
    ],
)
def test_a_pipeline_cannot_claim_its_own_look_alike(
    team: Registry, claimed: str, error: type[Exception], message: str
) -> None:
    before = _count(team)
    ci = identity.Caller(channel="prefect-form", principal="ci", roles=frozenset({"pipeline"}))
    with identity.acting(ci), pytest.raises(error, match=message):
        team.approve("churn", 1, claimed_by=claimed)
    assert _count(team) == before and team.get_version("churn", 1).approvals == []
