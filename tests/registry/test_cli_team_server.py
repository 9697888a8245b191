"""Team-mode commands against the registry server (loopback HTTP, PostgreSQL), with real tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.approval import ApprovalInput, names_actor, record_form_decision
from registry.errors import ApprovalRequired, Forbidden
from registry.stages import Stage

MODEL = "churn"


@pytest.fixture
def team(registry_server, tmp_path: Path):
    """Tokens per role, and churn/1 registered by the pipeline and in staging."""
    s = registry_server
    tokens = {
        "pipeline": s.token("pipeline", name="ml-pipeline"),
        "approver": s.token("approver", name="risk-officer"),
        "approver2": s.token("approver", name="carol"),
        "operator": s.token("operator", name="ops"),
        "reader": s.token("reader", name="viewer"),
        "admin": s.admin_token,
    }
    pipe = s.client(tokens["pipeline"])
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"weights")
    pipe.register(MODEL, artifact)
    pipe.transition(MODEL, 1, "staging")
    yield s, tokens, pipe
    pipe.close()


def _cli(server, token: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOVFLOW_REGISTRY_URL": server.url, "GOVFLOW_TOKEN": token, "COLUMNS": "200"}
    for var in ("GOVFLOW_ACTOR", "GOVFLOW_POLICY", "GOVFLOW_ARTIFACT_ROOT", "PREFECT_API_URL"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "govflow", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
    if expect == 2:
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc


def _form(**answer) -> ApprovalInput:
    return ApprovalInput(**{"approve": True, "approver": "", "reason": "", "code": "", **answer})


def test_a_code_carries_the_approvers_identity_through_the_pipelines_relay(team) -> None:
    server, tokens, pipe = team
    assert not names_actor(pipe)  # behind a server the token names the actor
    code = _cli(server, tokens["approver"], "approve", MODEL, "1", "--code").stdout.splitlines()[0]
    # The flow relays the form with its pipeline token; a typed name alone is a claim.
    claim = record_form_decision(pipe, pipe.get_version(MODEL, 1), _form(approver="carol"))
    assert (claim.actor, claim.claimed_by, claim.channel) == ("carol", "carol", "prefect-form")
    ops = server.client(tokens["operator"])
    with pytest.raises(ApprovalRequired):
        ops.transition(MODEL, 1, "production")
    a = record_form_decision(pipe, pipe.get_version(MODEL, 1), _form(code=code, approver="mallory"))
    assert (a.actor, a.claimed_by, a.channel) == ("risk-officer", None, "prefect-form")
    ops.transition(MODEL, 1, "production")
    assert ops.get_version(MODEL, 1).stage == Stage.PRODUCTION
    approved = [e for e in server.registry.audit_log(model=MODEL) if e.action == "version.approved"]
    assert approved[-1].payload["via"]["principal"] == "ml-pipeline"
    assert approved[-1].payload["via"]["channel"] == "prefect-form" and approved[-1].actor == "risk-officer"
    ops.close()


def test_cli_approve_is_the_tokens_principal(team) -> None:
    server, tokens, pipe = team
    out = json.loads(_cli(server, tokens["approver"], "approve", MODEL, "1", "--json").stdout)
    assert (out["actor"], out["channel"], out["claimed_by"]) == ("risk-officer", "cli", None)
    err = _cli(server, tokens["approver2"], "approve", MODEL, "1", "--actor", "risk-officer", expect=2).stderr
    assert "authenticated as carol" in err


@pytest.mark.parametrize("role", ["pipeline", "reader", "operator"])
def test_only_approvers_get_codes(team, role) -> None:
    server, tokens, _ = team
    err = _cli(server, tokens[role], "approve", MODEL, "1", "--code", expect=2).stderr
    assert "approver role" in err


def test_the_registrant_gets_no_code_even_with_the_approver_role(team) -> None:
    server, tokens, pipe = team
    both = server.token("pipeline", "approver", name="dual")
    dual = server.client(both)
    dual.register(MODEL, server.tmp / "admin.token")  # any file: a second version, registered by dual
    dual.transition(MODEL, 2, "staging")
    assert "separation of duties" in _cli(server, both, "approve", MODEL, "2", "--code", expect=2).stderr
    dual.close()


def test_missing_or_revoked_token_is_one_line(team) -> None:
    server, tokens, _ = team
    assert "GOVFLOW_TOKEN" in _cli(server, "", "approve", MODEL, "1", "--code", expect=2).stderr
    server.users("revoke_user", "risk-officer")
    err = _cli(server, tokens["approver"], "approve", MODEL, "1", "--code", expect=2).stderr
    assert "revoked" in err and tokens["approver"] not in err
    assert not [e for e in server.registry.audit_log(model=MODEL) if e.action == "approval.code_issued"]


def test_relaying_the_form_needs_the_form_permission(team) -> None:
    server, tokens, pipe = team
    reader = server.client(tokens["reader"])
    with pytest.raises(Forbidden):
        record_form_decision(reader, reader.get_version(MODEL, 1), _form(approver="carol"))
    reader.close()
    assert pipe.get_version(MODEL, 1).approvals == []


def test_policy_commands_over_the_server(team, tmp_path) -> None:
    server, tokens, _ = team
    shown = json.loads(_cli(server, tokens["reader"], "policy", "show", "--json").stdout)
    assert shown["document"]["authenticated_approvals"] is True  # the server-mode default
    lax = tmp_path / "lax.toml"
    lax.write_text("[stages.production]\napprovals = 0\n")
    for role in ("approver", "operator", "pipeline"):
        assert "admin role" in _cli(server, tokens[role], "policy", "set", str(lax), expect=2).stderr
    assert _cli(server, tokens["reader"], "policy", "show", "--json").stdout.count(shown["sha256"]) == 1
    out = _cli(server, tokens["admin"], "policy", "set", str(lax), "--reason", "trial").stdout
    history = json.loads(_cli(server, tokens["reader"], "policy", "history", "--json").stdout)
    assert history[-1]["sha256"] in out and history[-1]["set_by"] == "admin"


def test_waive_over_the_server(team) -> None:
    server, tokens, pipe = team
    pipe.add_evidence(MODEL, 1, gate="fairness", passed=False)
    assert (
        "approver role"
        in _cli(server, tokens["pipeline"], "waive", MODEL, "1", "fairness", "--reason", "x", expect=2).stderr
    )
    out = _cli(server, tokens["approver"], "waive", MODEL, "1", "fairness", "--reason", "accepted").stdout
    assert "waived by risk-officer" in out
