"""Production is what can be served (design invariant 19): the loading rules of ``govflow serve``
are applied when a version registers (a warning naming the fix) and enters production (refused).

Every test runs on SQLite, PostgreSQL and the registry server over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from registry import Policy, Registry, Stage, errors, waiting

NAME = "churn"
PICKLE_REFUSAL = (
    "churn/1 cannot enter production, as it could not be served: the joblib artifact needs pickle "
    "loads, which the policy forbids; register a skops artifact (register_model saves one), or have "
    "an admin set allow_pickle = true (govflow policy set)"
)
PICKLE_WARNING = (
    "churn/1 is registered but could not be served from production, so promotion will be refused: "
    "the joblib artifact needs pickle loads, which the policy forbids; register a skops artifact "
    "(register_model saves one), or have an admin set allow_pickle = true (govflow policy set)"
)
SCHEMA_REFUSAL = (
    "churn/1 cannot enter production, as it could not be served: it records no input schema, which "
    "the policy requires for production; register it with --input-example or --input-schema "
    "(register_model(..., input_example=X))"
)
COLUMNS = [{"name": "a", "dtype": "float64"}]


def _fitted() -> LogisticRegression:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 1))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


@pytest.fixture
def joblib_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.joblib"
    joblib.dump(_fitted(), path)
    return path


def _serving_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, errors.ServingWarning)]


def _register(reg: Registry, path: Path, fmt: str, **fields) -> tuple[int, list[warnings.WarningMessage]]:
    """Register as alice and stage it; the serving warnings raised (in this process, server included)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        v = reg.register(NAME, path, actor="alice", artifact_format=fmt, **fields)
    reg.transition(NAME, v.version, "staging", actor="alice")
    return v.version, _serving_warnings(caught)


def _approve_and_promote(reg: Registry, version: int) -> None:
    reg.approve(NAME, version, actor="bob", reason="reviewed")
    reg.transition(NAME, version, "production", actor="carol")


def _set_policy(reg: Registry, **fields) -> None:
    reg.set_policy(Policy(**fields), actor="admin", reason="test")


# --- pickle and joblib ---------------------------------------------------------------------------


def test_joblib_under_the_default_policy_warns_and_is_refused_production(
    registry: Registry, joblib_file: Path
) -> None:
    version, found = _register(registry, joblib_file, "joblib")
    # One warning, naming the fix and pointing at this file: on the server backend the server
    # hands it back to the client rather than warning (and logging) itself.
    assert [str(w.message) for w in found] == [PICKLE_WARNING]
    assert found[0].filename == __file__
    w = found[0].message
    assert (w.model, w.version, w.reason) == (NAME, 1, "pickle")

    registry.approve(NAME, version, actor="bob", reason="reviewed")
    before = registry.audit_log()
    with pytest.raises(errors.NotServable) as err:
        registry.transition(NAME, version, "production", actor="carol")
    assert str(err.value) == PICKLE_REFUSAL
    assert (err.value.model, err.value.version, err.value.reason) == (NAME, 1, "pickle")
    assert isinstance(err.value, errors.Refused)
    # Nothing written: no event, still staged, no production alias, no stage change.
    assert registry.audit_log() == before
    v = registry.get_version(NAME, version)
    assert (v.stage, v.aliases) == (Stage.STAGING, [])
    assert [h.to_stage for h in registry.history(NAME)] == [Stage.DEVELOPMENT, Stage.STAGING]
    with pytest.raises(errors.AliasNotFound):
        registry.resolve(f"{NAME}@production")


def test_a_plain_pickle_is_refused_production_as_joblib_is(registry: Registry, tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_fitted()))
    version, found = _register(registry, path, "pickle")
    assert len(found) == 1 and "the pickle artifact needs pickle loads" in str(found[0].message)
    registry.approve(NAME, version, actor="bob")
    with pytest.raises(errors.NotServable, match=r"^churn/1 cannot enter production, .* the pickle artifact"):
        registry.transition(NAME, version, "production", actor="carol")


def test_joblib_under_allow_pickle_registers_quietly_and_is_promoted(
    registry: Registry, joblib_file: Path
) -> None:
    _set_policy(registry, allow_pickle=True)
    version, found = _register(registry, joblib_file, "joblib")
    assert found == []
    _approve_and_promote(registry, version)
    assert registry.resolve(f"{NAME}@production").version == version


def test_the_refusal_is_decided_by_the_policy_in_force_at_the_promotion(
    registry: Registry, joblib_file: Path
) -> None:
    """Registered while pickle was allowed, promoted after an admin forbade it: refused."""
    _set_policy(registry, allow_pickle=True)
    version, found = _register(registry, joblib_file, "joblib")
    assert found == []
    registry.approve(NAME, version, actor="bob")
    _set_policy(registry)
    with pytest.raises(errors.NotServable, match="pickle loads, which the policy forbids"):
        registry.transition(NAME, version, "production", actor="carol")
    _set_policy(registry, allow_pickle=True)  # and allowed again: promoted on the same approval
    registry.transition(NAME, version, "production", actor="carol")
    assert registry.get_version(NAME, version).stage == Stage.PRODUCTION


@pytest.mark.parametrize("kind", ["skops", "file"])
def test_skops_and_plain_files_register_quietly_and_are_promoted(
    registry: Registry, artifact: Path, kind: str
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if kind == "skops":
            v = registry.register_model(NAME, _fitted(), actor="alice")
        else:
            v = registry.register(NAME, artifact, actor="alice")  # stored, never loaded by the registry
    assert (v.artifact.format, _serving_warnings(caught)) == (kind, [])
    registry.transition(NAME, v.version, "staging", actor="alice")
    _approve_and_promote(registry, v.version)
    assert registry.resolve(f"{NAME}@production").version == v.version


# --- the input schema rule -------------------------------------------------------------------------


def test_no_input_schema_under_the_input_schema_rule_warns_and_is_refused(
    registry: Registry, artifact: Path
) -> None:
    registry.set_policy(
        Policy.from_dict({"stages": {"production": {"input_schema": True}}}), actor="admin", reason="served"
    )
    version, found = _register(registry, artifact, "file")
    assert len(found) == 1 and found[0].message.reason == "input_schema"
    assert str(found[0].message).endswith(
        "it records no input schema, which the policy requires for production; register it with "
        "--input-example or --input-schema (register_model(..., input_example=X))"
    )
    registry.approve(NAME, version, actor="bob")
    before = len(registry.audit_log())
    with pytest.raises(errors.NotServable) as err:
        registry.transition(NAME, version, "production", actor="carol")
    assert (str(err.value), err.value.reason) == (SCHEMA_REFUSAL, "input_schema")
    assert len(registry.audit_log()) == before
    assert registry.get_version(NAME, version).stage == Stage.STAGING

    # With a schema the same rule admits it; both problems at once are named in one line.
    with_schema, found = _register(registry, artifact, "file", input_schema=COLUMNS)
    assert found == []
    _approve_and_promote(registry, with_schema)
    assert registry.resolve(f"{NAME}@production").version == with_schema


def test_both_problems_are_named_in_one_line(registry: Registry, joblib_file: Path) -> None:
    registry.set_policy(
        Policy.from_dict({"stages": {"production": {"input_schema": True}}}), actor="admin", reason="served"
    )
    version, found = _register(registry, joblib_file, "joblib")
    assert found[0].message.reason == "pickle,input_schema"
    registry.approve(NAME, version, actor="bob")
    with pytest.raises(errors.NotServable) as err:
        registry.transition(NAME, version, "production", actor="carol")
    message = str(err.value)
    assert len(message.splitlines()) == 1 and err.value.reason == "pickle,input_schema"
    assert "pickle loads, which the policy forbids" in message and "records no input schema" in message


def test_without_the_rule_a_version_without_a_schema_is_promoted(registry: Registry, artifact: Path) -> None:
    version, found = _register(registry, artifact, "file")
    assert found == []
    _approve_and_promote(registry, version)
    assert registry.resolve(f"{NAME}@production").version == version


# --- rollback and settle ---------------------------------------------------------------------------


def test_rollback_skips_a_version_that_could_not_be_served(registry: Registry, joblib_file: Path) -> None:
    """v1 skops, v2 joblib (promoted while pickle was allowed), v3 skops; then pickle is forbidden."""
    _set_policy(registry, allow_pickle=True)
    first = registry.register_model(NAME, _fitted(), actor="alice").version
    registry.transition(NAME, first, "staging", actor="alice")
    _approve_and_promote(registry, first)
    second, _ = _register(registry, joblib_file, "joblib")
    _approve_and_promote(registry, second)
    third = registry.register_model(NAME, _fitted(), actor="alice").version
    registry.transition(NAME, third, "staging", actor="alice")
    _approve_and_promote(registry, third)
    _set_policy(registry)

    result = registry.rollback(NAME, reason="drift", actor="ops")
    assert (result.demoted, result.restored) == (3, 1)  # version 2 is skipped, not restored
    assert registry.get_version(NAME, 2).stage == Stage.ARCHIVED
    before = registry.audit_log()
    with pytest.raises(errors.RollbackRefused) as err:
        registry.rollback(NAME, reason="again", actor="ops")
    assert str(err.value) == (
        "churn/1: no earlier production version may be restored (skipped version 3: it was rolled back; "
        "version 2: it could not be served: the joblib artifact needs pickle loads, which the policy forbids)"
    )
    assert registry.audit_log() == before


def test_settle_rejects_a_version_that_could_not_be_served(registry: Registry, joblib_file: Path) -> None:
    version, _ = _register(registry, joblib_file, "joblib")
    registry.approve(NAME, version, actor="bob")
    out = waiting.settle(registry, NAME, version, reason="approval timed out", actor="pipeline-bot")
    assert out.outcome == "rejected" and "could not be served" in out.reason
    assert registry.get_version(NAME, version).stage == Stage.DEVELOPMENT


# --- the same rule as govflow serve --------------------------------------------------------------


@pytest.mark.parametrize("allow_pickle", [False, True], ids=["pickle forbidden", "pickle allowed"])
@pytest.mark.parametrize("fmt", ["skops", "joblib", "pickle"])
def test_the_registry_admits_exactly_what_govflow_serve_loads(
    tmp_path: Path, fmt: str, allow_pickle: bool
) -> None:
    """The server's loader, given its own opt-in, loads a version iff the registry would admit it."""
    from deployments.model_slot import load_served
    from registry.serialization import save
    from registry.servable import serving_problems

    path = tmp_path / f"model.{fmt}"
    if fmt == "joblib":
        joblib.dump(_fitted(), path)
    else:
        save(_fitted(), path, fmt)
    reg = Registry(
        url=f"sqlite:///{tmp_path / 'r.db'}",
        artifact_root=str(tmp_path / "a"),
        policy=Policy(allow_pickle=allow_pickle),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.ServingWarning)
        v = reg.register(NAME, path, actor="alice", artifact_format=fmt, input_schema=COLUMNS)
    admitted = serving_problems(v.artifact.format, v.input_schema, reg.policy) == []
    try:
        load_served(reg, NAME, v.version, allow_pickle=True, actor="ops")
        loaded = True
    except errors.UnsafeModel:
        loaded = False
    assert admitted == loaded == (fmt == "skops" or allow_pickle)
    reg.close()


# --- the policy option -----------------------------------------------------------------------------


def test_the_input_schema_option_leaves_existing_policy_documents_unchanged() -> None:
    """Left out while false, so a stored policy keeps its sha256 and a client's file still matches."""
    from registry.policy_record import digest

    plain = Policy.from_dict({"stages": {"production": {"approvals": 1, "gates": ["data"]}}})
    _, document = digest(plain)
    assert document["stages"]["production"] == {"approvals": 1, "approvers": None, "gates": ["data"]}
    asked = Policy.from_dict({"stages": {"production": {"input_schema": True}}})
    assert digest(asked)[1]["stages"]["production"]["input_schema"] is True
    assert Policy.from_dict(digest(asked)[1]) == asked
    with pytest.raises(errors.PolicyError, match=r"stages\.production\.input_schema"):
        Policy.from_dict({"stages": {"production": {"input_schema": "sometimes"}}})


# --- the command line ------------------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "govflow", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def _check_cli(
    env: dict[str, str], joblib_file: Path, *, approver: dict[str, str], operator: dict[str, str]
) -> None:
    reg = _cli(env, "register", NAME, "--artifact", str(joblib_file))
    assert "registered churn/1 (development)" in reg.stdout and "format joblib" in reg.stdout
    assert reg.stderr.splitlines() == [f"warning: {PICKLE_WARNING}"]
    _cli(env, "transition", NAME, "1", "staging")
    _cli(approver, "approve", NAME, "1", "--reason", "reviewed")
    refused = _cli(operator, "transition", NAME, "1", "production", expect=2)
    assert refused.stderr.splitlines() == [f"error: {PICKLE_REFUSAL}"]
    shown = _cli(env, "show", f"{NAME}/1", "--json")
    assert '"stage": "staging"' in shown.stdout


def test_the_cli_warns_in_one_line_and_refuses_in_one_line(tmp_path: Path, joblib_file: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")},
        "GOVFLOW_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "GOVFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "GOVFLOW_ACTOR": "alice",
        "COLUMNS": "200",
    }
    _check_cli(
        env, joblib_file, approver={**env, "GOVFLOW_ACTOR": "bob"}, operator={**env, "GOVFLOW_ACTOR": "carol"}
    )


def test_the_cli_against_a_server_gets_the_servers_warning(registry_server, joblib_file: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOVFLOW_", "PREFECT_API"))}
    base.update({"GOVFLOW_REGISTRY_URL": registry_server.url, "COLUMNS": "200"})

    def as_role(role: str, name: str) -> dict[str, str]:
        return {**base, "GOVFLOW_TOKEN": registry_server.token(role, name=name)}

    _check_cli(
        as_role("pipeline", "ml-pipeline"),
        joblib_file,
        approver=as_role("approver", "risk-officer"),
        operator=as_role("operator", "ops"),
    )
