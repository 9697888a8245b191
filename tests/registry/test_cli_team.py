"""Team-mode commands: approval codes, waivers, the stored policy, and the approval form's decision."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from flows.approval import ApprovalInput, form_notice, record_form_decision
from registry import Registry, identity
from registry.errors import (
    ApprovalRequired,
    Forbidden,
    GateFailed,
    InvalidInput,
    Refused,
    SeparationOfDuties,
)
from registry.identity import Caller
from registry.stages import Stage

MODEL = "churn"


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {
        "GOVFLOW_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "GOVFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }


@pytest.fixture
def reg(home: dict[str, str], tmp_path: Path):
    """A registry with churn/1 registered by alice and in staging."""
    r = Registry(url=home["GOVFLOW_REGISTRY_URL"], artifact_root=home["GOVFLOW_ARTIFACT_ROOT"])
    _staged(r, tmp_path, b"weights-1")
    yield r
    r.close()


def _staged(r: Registry, tmp_path: Path, data: bytes) -> int:
    artifact = tmp_path / f"model-{data.hex()}.bin"
    artifact.write_bytes(data)
    v = r.register(MODEL, artifact, actor="alice")
    r.transition(MODEL, v.version, "staging", actor="alice")
    return v.version


@pytest.fixture
def cli(home: dict[str, str]):
    env = {**os.environ, **home, "COLUMNS": "200"}
    for var in ("GOVFLOW_POLICY", "GOVFLOW_ACTOR", "PREFECT_API_URL"):
        env.pop(var, None)

    def run(*args: str, actor: str = "bob", expect: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "govflow", *args],
            env=dict(env, GOVFLOW_ACTOR=actor),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
        if expect == 2:
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
        return proc

    return run


def _form(**answer) -> ApprovalInput:
    return ApprovalInput(**{"approve": True, "approver": "", "reason": "", "code": "", **answer})


def _strict(r: Registry) -> None:
    r.set_policy(r.policy.model_copy(update={"authenticated_approvals": True}), actor="root", reason="team")


def _version(r: Registry, number: int = 1):
    return r.get_version(MODEL, number)


# --- approve --code ------------------------------------------------------------------------


def test_code_from_the_cli_approves_once_as_its_principal(reg, cli) -> None:
    out = cli("approve", MODEL, "1", "--code").stdout.splitlines()
    code = out[0]
    assert code.startswith("GF-") and "valid 10 minutes" in out[1] and "Code field" in out[1]
    assert _version(reg).approvals == []  # asking for a code approves nothing
    # A typed name beside the code is ignored: the code names who approved.
    a = record_form_decision(reg, _version(reg), _form(code=code, approver="mallory"))
    assert (a.actor, a.channel, a.claimed_by) == ("bob", "prefect-form", None)
    with pytest.raises(Refused, match="already used"):
        record_form_decision(reg, _version(reg), _form(code=code))
    assert [x.actor for x in _version(reg).approvals] == ["bob"]
    reg.transition(MODEL, 1, "production", actor="alice")
    assert _version(reg).stage == Stage.PRODUCTION


def test_code_json_and_the_events_it_leaves(reg, cli) -> None:
    body = json.loads(cli("approve", MODEL, "1", "--code", "--json").stdout)
    assert body["model"] == MODEL and body["version"] == 1 and body["valid_for"] == 600
    issued = [e for e in reg.audit_log(model=MODEL) if e.action == "approval.code_issued"]
    assert len(issued) == 1 and issued[0].actor == "bob"
    assert body["code"] not in json.dumps([e.payload for e in reg.audit_log()])  # never stored raw


def test_code_expires(reg, cli, monkeypatch) -> None:
    code = cli("approve", MODEL, "1", "--code").stdout.splitlines()[0]
    import registry.base as base
    import registry.decisions as decisions

    later = base.now() + timedelta(seconds=601)
    monkeypatch.setattr(decisions, "now", lambda: later)
    with pytest.raises(Refused, match="expired"):
        record_form_decision(reg, _version(reg), _form(code=code))
    assert _version(reg).approvals == []


def test_code_is_bound_to_its_version_and_review(reg, cli, tmp_path) -> None:
    code = cli("approve", MODEL, "1", "--code").stdout.splitlines()[0]
    two = _staged(reg, tmp_path, b"weights-2")
    with pytest.raises(Refused, match="another version"):
        record_form_decision(reg, _version(reg, two), _form(code=code))
    # A new review round (rejected, staged again) voids codes issued before it.
    reg.reject(MODEL, 1, reason="redo", actor="carol")
    reg.transition(MODEL, 1, "staging", actor="alice")
    with pytest.raises(Refused, match="earlier review"):
        record_form_decision(reg, _version(reg), _form(code=code))


@pytest.mark.parametrize("pasted", ["GF-00000000-AAAAAAAAAAAAAAAA", "not-a-code", "GF-1234"])
def test_forged_or_malformed_codes_are_refused(reg, pasted) -> None:
    with pytest.raises((Refused, InvalidInput), match="code"):
        record_form_decision(reg, _version(reg), _form(code=pasted))
    assert _version(reg).approvals == []


def test_a_code_cannot_be_tampered_into_another(reg, cli) -> None:
    code = cli("approve", MODEL, "1", "--code").stdout.splitlines()[0]
    forged = code[:-1] + ("A" if code[-1] != "A" else "B")
    with pytest.raises(Refused, match="code"):
        record_form_decision(reg, _version(reg), _form(code=forged))
    assert record_form_decision(reg, _version(reg), _form(code=code)).actor == "bob"


@pytest.mark.parametrize("registrant", ["alice", "ALICE", "\uff41lice"])
def test_the_registrant_gets_no_code(reg, cli, registrant) -> None:
    err = cli("approve", MODEL, "1", "--code", actor=registrant, expect=2).stderr
    assert "separation of duties" in err
    assert not [e for e in reg.audit_log(model=MODEL) if e.action == "approval.code_issued"]


def test_code_refuses_options_it_cannot_carry(cli) -> None:
    assert "--reason" in cli("approve", MODEL, "1", "--code", "--reason", "ok", expect=2).stderr
    assert "--stage" in cli("approve", MODEL, "1", "--code", "--stage", "staging", expect=2).stderr
    assert "version" in cli("approve", MODEL, "1x", "--code", expect=2).stderr


def test_cli_approvals_are_recorded_on_the_cli_channel(reg, cli) -> None:
    cli("approve", MODEL, "1", "--reason", "reviewed")
    (a,) = _version(reg).approvals
    assert (a.actor, a.channel, a.claimed_by) == ("bob", "cli", None)
    shown = cli("show", f"{MODEL}/1").stdout
    assert "by bob via cli" in shown


# --- waive ---------------------------------------------------------------------------------


def test_waive_lifts_a_failed_gate_and_is_audited(reg, cli) -> None:
    reg.add_evidence(MODEL, 1, gate="fairness", passed=False, value=0.3, threshold=0.1, actor="alice")
    reg.approve(MODEL, 1, actor="carol")
    with pytest.raises(GateFailed):
        reg.transition(MODEL, 1, "production", actor="alice")
    out = cli("waive", MODEL, "1", "fairness", "--reason", "known bias [red]mitigated[/] downstream").stdout
    assert "fairness waived by bob: known bias [red]mitigated[/] downstream" in out  # printed, not styled
    (w,) = _version(reg).waivers
    assert (w.gate, w.actor) == ("fairness", "bob")
    assert "waiver   fairness by bob" in cli("show", f"{MODEL}/1").stdout
    reg.transition(MODEL, 1, "production", actor="alice")
    assert [e.action for e in reg.audit_log(model=MODEL)].count("evidence.waived") == 1


def test_waive_refusals_are_one_line(reg, cli) -> None:
    reg.add_evidence(MODEL, 1, gate="fairness", passed=False, actor="alice")
    reg.add_evidence(MODEL, 1, gate="data", passed=True, actor="alice")
    assert (
        "separation of duties"
        in cli("waive", MODEL, "1", "fairness", "--reason", "x", actor="alice", expect=2).stderr
    )
    assert "nothing to waive" in cli("waive", MODEL, "1", "data", "--reason", "x", expect=2).stderr
    assert "no drift result" in cli("waive", MODEL, "1", "drift", "--reason", "x", expect=2).stderr
    assert "--reason" in cli("waive", MODEL, "1", "fairness", expect=2).stderr
    assert "reason" in cli("waive", MODEL, "1", "fairness", "--reason", " ", expect=2).stderr
    assert "gate" in cli("waive", MODEL, "1", "fair\u200bness", "--reason", "x", expect=2).stderr
    assert _version(reg).waivers == []


def test_waive_is_refused_when_policy_forbids(reg, cli) -> None:
    reg.add_evidence(MODEL, 1, gate="fairness", passed=False, actor="alice")
    reg.set_policy(reg.policy.model_copy(update={"waivers": False}), actor="root")
    assert "forbids waivers" in cli("waive", MODEL, "1", "fairness", "--reason", "x", expect=2).stderr


# --- policy show / set / history -----------------------------------------------------------


def test_policy_show_set_history(reg, cli, tmp_path) -> None:
    before = json.loads(cli("policy", "show", "--json").stdout)
    assert len(before["sha256"]) == 64 and before["document"]["authenticated_approvals"] is False
    human = cli("policy", "show").stdout
    assert before["sha256"] in human and "authenticated_approvals: false" in human
    strict = tmp_path / "strict.toml"
    strict.write_text('authenticated_approvals = true\napproval_valid_for = "2d"\n')
    out = cli("policy", "set", str(strict), "--reason", "server mode", actor="root").stdout
    after = json.loads(cli("policy", "show", "--json").stdout)
    assert after["sha256"] != before["sha256"] and after["sha256"] in out
    assert (after["set_by"], after["reason"]) == ("root", "server mode")
    assert after["document"]["approval_valid_for"] == 2 * 86_400
    history = json.loads(cli("policy", "history", "--json").stdout)
    assert [h["sha256"] for h in history] == [before["sha256"], after["sha256"]]
    assert after["sha256"][:12] in cli("policy", "history").stdout
    sets = [e for e in reg.audit_log() if e.action == "policy.set"]
    assert sets and sets[-1].actor == "root"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("approvals = [", "policy"),  # not TOML
        ("separation_of_duties = true\nbogus = 1\n", "bogus"),  # unknown key
        ('[stages.production]\napprovals = "two"\n', "approvals"),  # a string where an int belongs
        ('approval_valid_for = "soon"\n', "approval_valid_for"),
        ("approval_valid_for = 0\n", "approval_valid_for"),
    ],
)
def test_policy_set_with_a_bad_file_changes_nothing(reg, cli, tmp_path, text, field) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    before = (reg.policy_info(), len(reg.policy_history()), len(reg.audit_log()))
    err = cli("policy", "set", str(bad), actor="root", expect=2).stderr
    assert field in err
    assert (reg.policy_info(), len(reg.policy_history()), len(reg.audit_log())) == before


def test_policy_set_refuses_a_missing_file_or_a_folder(reg, cli, tmp_path) -> None:
    before = reg.policy_info()
    assert "not a readable file" in cli("policy", "set", str(tmp_path / "nope.toml"), expect=2).stderr
    assert "not a readable file" in cli("policy", "set", str(tmp_path), expect=2).stderr
    assert reg.policy_info() == before


def test_policy_set_by_a_non_admin_is_refused_in_the_cli(reg, home, tmp_path, monkeypatch, capsys) -> None:
    from govflow.cli import main

    strict = tmp_path / "strict.toml"
    strict.write_text("authenticated_approvals = true\n")
    for var, value in home.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(sys, "argv", ["govflow", "policy", "set", str(strict)])
    before = reg.policy_info()
    bob = Caller(channel="api", principal="bob", roles=frozenset({"approver", "operator"}))
    with identity.acting(bob), pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "needs the admin role" in err
    assert reg.policy_info() == before


# --- the approval form ---------------------------------------------------------------------


def test_form_approval_counts_by_default(reg) -> None:
    a = record_form_decision(reg, _version(reg), _form(approver="risk-officer", reason="ok"))
    assert (a.actor, a.channel, a.claimed_by) == ("risk-officer", "prefect-form", "risk-officer")
    reg.transition(MODEL, 1, "production", actor="alice")
    assert _version(reg).stage == Stage.PRODUCTION


def test_form_approval_is_only_a_claim_under_authenticated_approvals(reg, cli) -> None:
    _strict(reg)
    a = record_form_decision(reg, _version(reg), _form(approver="bob"))
    assert a.claimed_by == "bob"
    with pytest.raises(ApprovalRequired):
        reg.transition(MODEL, 1, "production", actor="alice")
    code = cli("approve", MODEL, "1", "--code", actor="carol").stdout.splitlines()[0]
    assert record_form_decision(reg, _version(reg), _form(code=code)).actor == "carol"
    reg.transition(MODEL, 1, "production", actor="alice")
    assert _version(reg).stage == Stage.PRODUCTION


def test_a_typed_claim_does_not_block_the_named_approvers_own_approval(reg) -> None:
    # Anyone can type "bob" into the form; that must not use up bob's authenticated decision.
    _strict(reg)
    record_form_decision(reg, _version(reg), _form(approver="bob"))
    reg.approve(MODEL, 1, actor="bob")
    reg.transition(MODEL, 1, "production", actor="alice")


def test_form_reject_always_counts(reg) -> None:
    _strict(reg)
    a = record_form_decision(reg, _version(reg), _form(approve=False, approver="bob", reason="too close"))
    assert (a.decision.value, a.claimed_by, a.channel) == ("reject", "bob", "prefect-form")
    assert _version(reg).stage == Stage.DEVELOPMENT


def test_untouched_form_rejects_under_the_flows_identity(reg, monkeypatch) -> None:
    monkeypatch.setenv("GOVFLOW_ACTOR", "ml-pipeline")
    a = record_form_decision(reg, _version(reg), ApprovalInput())
    assert (a.decision.value, a.actor, a.claimed_by) == ("reject", "ml-pipeline", None)
    assert _version(reg).stage == Stage.DEVELOPMENT


@pytest.mark.parametrize("typed", ["alice", "Alice", "\uff41\uff4c\uff49\uff43\uff45", " alice "])
def test_form_cannot_approve_as_the_registrant(reg, typed) -> None:
    with pytest.raises(SeparationOfDuties):
        record_form_decision(reg, _version(reg), _form(approver=typed))
    assert _version(reg).approvals == []


@pytest.mark.parametrize("typed", ["ali\u200bce", "bo\nb", "bo\u0000b", "\u202ebob", "x" * 200])
def test_form_refuses_hidden_characters_and_long_names(reg, typed) -> None:
    with pytest.raises(InvalidInput, match="claimed_by"):
        record_form_decision(reg, _version(reg), _form(approver=typed))
    assert _version(reg).approvals == []


def test_form_approval_needs_a_name_or_a_code(reg) -> None:
    with pytest.raises(InvalidInput, match="approver"):
        record_form_decision(reg, _version(reg), _form(approver="   "))


def test_form_relay_needs_the_form_permission(reg) -> None:
    # Behind a server, the flow relays the form with its own token; a reader's token may not.
    reader = Caller(channel="api", principal="viewer", roles=frozenset({"reader"}))
    with identity.acting(reader), pytest.raises(Forbidden):
        record_form_decision(reg, _version(reg), _form(approver="bob"))
    assert _version(reg).approvals == []


def test_form_notice_says_how_to_approve_with_an_identity() -> None:
    strict = form_notice("credit-risk", 3, authenticated_only=True)
    assert "does not count" in strict and "always counts" in strict
    assert "`govflow approve credit-risk 3`" in strict and "`govflow approve credit-risk 3 --code`" in strict
    relaxed = form_notice("credit-risk", 3, authenticated_only=False)
    assert "does not count" not in relaxed and "--code" in relaxed


def test_form_defaults_are_the_safe_answer() -> None:
    form = ApprovalInput()
    assert (form.approve, form.approver, form.code) == (False, "", "")
    assert "Code" in json.dumps(ApprovalInput.model_json_schema())


def test_form_notes_cannot_carry_markdown_from_a_typed_name() -> None:
    from flows.approval import markdown_text

    note = markdown_text("Refused: [paste your code here](http://evil.example) <img src=x>\n# boss")
    assert "\n" not in note
    assert not re.search(r"(?<!\\)[\[\]()<>#]", note), note  # every one of them escaped
    assert note.startswith("Refused: \\[paste")
