"""The command a waiting run prints works when pasted into the shell the run was started from.

``flows.approval_hint`` is imported inside the tests, so this file also runs (and fails) against
code that predates it.
"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import flows.approval as approval
from registry import Policy, Registry
from registry.entities import Decision
from registry.policy import StageRule
from registry.stages import Stage
from tests.reliability.cli import CliResult, run_cli

MODEL = "credit-risk"
PIPELINE = "ml-pipeline"


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: object) -> None:
        self.lines.append(message % args)


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The run's shell: the pipeline's identity and registry, no Prefect API setting."""
    env = {
        "GOVFLOW_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "GOVFLOW_ARTIFACT_ROOT": str(tmp_path / "art"),
        "GOVFLOW_ACTOR": PIPELINE,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("flows.approval_hint._unnamed_prefect_api", lambda: None)
    return env


def _staged(url: str, tmp_path: Path, policy: Policy | None = None) -> tuple[Registry, object]:
    reg = Registry(url=url, artifact_root=str(tmp_path / "art"), policy=policy or Policy())
    artifact = tmp_path / "m.bin"
    artifact.write_bytes(b"weights")
    reg.register(MODEL, artifact, actor=PIPELINE)
    return reg, reg.transition(MODEL, 1, "staging", actor=PIPELINE)


def _announced(reg: Registry, v, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """What the run logs while it waits: (approve command, reject command)."""
    log = _Log()
    monkeypatch.setattr(approval, "get_run_logger", lambda: log)
    approval.announce(reg, v, datetime.now(UTC) + timedelta(hours=1), suspended=False)
    (line,) = log.lines
    found = re.search(r"Approve with: (.+?) \(reject: (.+?)\)$", line)
    assert found, line
    return found[1], found[2]


def _paste(command: str, monkeypatch: pytest.MonkeyPatch) -> CliResult:
    """Run ``command`` as a shell would: leading NAME=VALUE words set the environment."""
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        monkeypatch.setenv(key, value)
    assert words[0] == "govflow", command
    return run_cli(*words[1:])


def test_the_approve_command_pasted_into_the_runs_shell_approves(shell, tmp_path, monkeypatch) -> None:
    reg, v = _staged(shell["GOVFLOW_REGISTRY_URL"], tmp_path)
    try:
        approve, reject = _announced(reg, v, monkeypatch)
        assert approve == f"govflow approve {MODEL} 1 --actor YOUR-NAME --reason TEXT"
        assert reject == f"govflow reject {MODEL} 1 --actor YOUR-NAME --reason TEXT"
        # The command printed before named nobody: in this shell it is the registrant approving.
        bare = run_cli("approve", MODEL, "1", "--reason", "TEXT")
        assert bare.code == 2 and "separation of duties" in bare.err, bare
        pasted = _paste(approve, monkeypatch)
        assert pasted.code == 0, pasted
        decisions = [(a.decision, a.actor) for a in reg.get_version(MODEL, 1).approvals]
        assert decisions == [(Decision.APPROVE, "YOUR-NAME")]
    finally:
        reg.close()


def test_a_policy_listing_approvers_names_one_who_is_not_the_registrant(shell, tmp_path, monkeypatch) -> None:
    listed = Policy(stages={Stage.PRODUCTION: StageRule(approvers=[PIPELINE, "risk-officer", "cro"])})
    reg, v = _staged(shell["GOVFLOW_REGISTRY_URL"], tmp_path, listed)
    try:
        approve, _ = _announced(reg, v, monkeypatch)
        assert approve == f"govflow approve {MODEL} 1 --actor risk-officer --reason TEXT"
        assert _paste(approve, monkeypatch).code == 0
        reg.transition(MODEL, 1, "production", actor="ops")
        assert reg.get_version(MODEL, 1).stage == Stage.PRODUCTION
    finally:
        reg.close()


def test_a_registry_the_shell_does_not_name_is_given_in_the_command(shell, tmp_path, monkeypatch) -> None:
    other = f"sqlite:///{tmp_path / 'from-config.db'}"  # a config's registry_url
    reg, v = _staged(other, tmp_path)
    try:
        approve, _ = _announced(reg, v, monkeypatch)
        assert approve.startswith(f"GOVFLOW_REGISTRY_URL={other} govflow approve {MODEL} 1 --actor ")
        assert _paste(approve, monkeypatch).code == 0
        assert [a.actor for a in reg.get_version(MODEL, 1).approvals] == ["YOUR-NAME"]
    finally:
        reg.close()
    assert not (tmp_path / "registry.db").exists()  # the shell's own registry was never opened


def _version(tmp_path: Path):
    reg, v = _staged(f"sqlite:///{tmp_path / 'pure.db'}", tmp_path)
    reg.close()
    return v


def test_a_temporary_prefect_server_and_a_password_are_handled(tmp_path: Path) -> None:
    from flows.approval_hint import Shell, decision_commands

    v = _version(tmp_path)
    approve, reject = decision_commands(
        v,
        Shell(
            embedded=True,
            registry_url="postgresql+psycopg://ops:s3cret@db.internal/govflow?sslmode=require",
            shell_registry_url="sqlite:///.govflow/registry.db",
            prefect_api="http://127.0.0.1:8123/api",
        ),
    )
    assert approve == (
        "GOVFLOW_REGISTRY_URL='postgresql+psycopg://ops:***@db.internal/govflow?sslmode=require' "
        f"PREFECT_API_URL=http://127.0.0.1:8123/api govflow approve {MODEL} 1 --actor YOUR-NAME --reason TEXT"
    )
    assert "s3cret" not in approve + reject and " reject credit-risk 1 " in reject


def test_behind_a_server_the_command_asks_for_an_approvers_token(server_harness, tmp_path, monkeypatch) -> None:
    from flows.approval_hint import decision_commands, shell_of

    monkeypatch.setattr("flows.approval_hint._unnamed_prefect_api", lambda: None)
    server_harness.open(f"sqlite:///{tmp_path / 'server.db'}", tmp_path, policy=Policy(), audited_admin=False)
    try:
        remote = server_harness.client(server_harness.token("pipeline"))
        monkeypatch.setenv("GOVFLOW_REGISTRY_URL", server_harness.url)
        seen = shell_of(remote)
        assert (seen.embedded, seen.registry_url) == (False, server_harness.url)
        approve, _ = decision_commands(_version(tmp_path), seen)
        assert approve == f"GOVFLOW_TOKEN_FILE=YOUR-APPROVER-TOKEN-FILE govflow approve {MODEL} 1 --reason TEXT"
        remote.close()
    finally:
        server_harness.shut()


def test_the_prefect_api_is_named_only_when_the_environment_does_not_name_it(monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    import flows.approval_hint as hint

    class _Client:
        api_url = "http://127.0.0.1:8555/api/"

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    import prefect.client.orchestration as orchestration

    monkeypatch.setattr(orchestration, "get_client", lambda sync_client: _Client())
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert hint._unnamed_prefect_api() == "http://127.0.0.1:8555/api/"
    with temporary_settings(updates={PREFECT_API_URL: "http://prefect.internal/api"}):
        assert hint._unnamed_prefect_api() is None
