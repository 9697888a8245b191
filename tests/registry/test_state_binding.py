"""State is a projection of the log (invariant 12): a raw edit of any state table is caught.

Each attack below is an insider with write access to the database who leaves the audit chain
alone: the chain still verifies, so only the replay can catch it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from registry import Policy, Registry


@pytest.fixture
def live(registry: Registry, artifact: Path) -> Registry:
    """churn: v1 archived, v2 in production (approved by bob), v3 staged; evidence and an alias."""
    for number in (1, 2, 3):
        registry.register(
            "churn",
            artifact,
            actor="alice",
            metrics={"auc": 0.8},
            params={"depth": number},
            lineage={
                "datasets": [{"role": "train", "uri": "data/train.csv", "sha256": "ab" * 32, "rows": 100}],
                "code": {"commit": "c0ffee12"},
            },
        )
        registry.transition("churn", number, "staging", actor="alice")
        registry.add_evidence("churn", number, gate="fairness", passed=number != 3, value=0.1, actor="ci")
        if number < 3:
            registry.approve("churn", number, actor="bob", reason="reviewed")
            registry.transition("churn", number, "production", actor="alice")
    registry.set_alias("churn", "champion", 2, actor="ops")
    report = registry.verify_audit()
    assert report.ok, report.message
    return registry


def _sql(reg: Registry, *statements: str) -> None:
    with reg.db.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


V = "(SELECT id FROM versions WHERE version = {n})"
ATTACKS = {
    # versions
    "promote-unapproved": (
        [
            "UPDATE versions SET stage = 'archived' WHERE version = 2",
            "UPDATE versions SET stage = 'production' WHERE version = 3",
            f"UPDATE aliases SET version_id = {V.format(n=3)} WHERE alias = 'production'",
        ],
        "churn/2: stage is archived, the log says production",
    ),
    "swap-digest": (
        ["UPDATE versions SET artifact_sha256 = '" + "f" * 64 + "' WHERE version = 2"],
        "churn/2: artifact digest is ffff",
    ),
    "artifact-size": (
        ["UPDATE versions SET artifact_size = 1 WHERE version = 1"],
        "churn/1: artifact_size is 1",
    ),
    "metrics": (["UPDATE versions SET metrics = '{\"auc\": 0.99}' WHERE version = 1"], "churn/1: metrics is"),
    "params": (["UPDATE versions SET params = '{\"depth\": 9}' WHERE version = 1"], "churn/1: params is"),
    "code-commit": (
        ["UPDATE versions SET code_commit = 'deadbeef' WHERE version = 3"],
        "churn/3: code_commit",
    ),
    "clear-rollback-mark": (
        ["UPDATE versions SET review_round = 0 WHERE version = 1"],
        "churn/1: review_round",
    ),
    "registrant": (
        ["UPDATE versions SET registered_by = 'carol' WHERE version = 3"],
        "churn/3: registered_by",
    ),
    # lineage
    "dataset-digest": (
        ["UPDATE datasets SET sha256 = '" + "0" * 64 + "' WHERE version_id = " + V.format(n=1)],
        "churn/1: datasets entry 1: sha256",
    ),
    "dataset-deleted": (
        ["DELETE FROM datasets WHERE version_id = " + V.format(n=2)],
        "churn/2: datasets entry 1 is missing",
    ),
    # approvals
    "forged-approval": (
        [
            "INSERT INTO approvals (version_id, decision, actor, reason, target_stage, review_round, at) "
            f"SELECT {V.format(n=3)}, 'approve', 'mallory', 'ok', 'production', 1, at FROM approvals LIMIT 1"
        ],
        "churn/3: approvals entry 1 is decision=approve, actor=mallory",
    ),
    "approver-renamed": (["UPDATE approvals SET actor = 'carol'"], "approvals entry 1: actor is carol"),
    "approval-deleted": (
        ["DELETE FROM approvals WHERE version_id = " + V.format(n=1)],
        "churn/1: approvals entry 1 is missing",
    ),
    # evidence
    "failed-gate-passed": (
        ["UPDATE evidence SET passed = true WHERE version_id = " + V.format(n=3)],
        "churn/3: evidence entry 1: passed is true, the log says false",
    ),
    "evidence-deleted": (
        ["DELETE FROM evidence WHERE version_id = " + V.format(n=3)],
        "churn/3: evidence entry 1 is missing",
    ),
    # stage history
    "history-approvers": (
        ["UPDATE stage_history SET approved_by = '[\"dave\"]' WHERE kind = 'promote'"],
        "stage history entry 3: approved_by",
    ),
    "history-version": (
        ["UPDATE stage_history SET version = 1 WHERE version = 2 AND kind = 'promote'"],
        "churn/2: stage history entry 3: version is 1, the log says 2",
    ),
    "history-deleted": (
        ["DELETE FROM stage_history WHERE kind = 'demote'"],
        "churn/1: stage history entry 4 is missing",
    ),
    # aliases
    "alias-moved": (
        [f"UPDATE aliases SET version_id = {V.format(n=3)} WHERE alias = 'champion'"],
        "churn@champion: version is 3, the log says 2",
    ),
    "lookalike-alias": (
        [
            "INSERT INTO aliases (model_id, alias, version_id, updated_at, updated_by) "
            f"SELECT model_id, 'production ', {V.format(n=3)}, updated_at, 'ops' FROM aliases LIMIT 1"
        ],
        "churn@production : aliases points it at version 3",
    ),
    "alias-history": (["DELETE FROM alias_history WHERE alias = 'champion'"], "churn: alias history entry"),
    # models and policies
    "model-creator": (["UPDATE models SET created_by = 'mallory'"], "churn: created_by is mallory"),
    "policy-document": (
        ["UPDATE policies SET document = '{\"separation_of_duties\": false}'"],
        "the stored document or its time differs",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_raw_edit_of_a_state_table_is_caught(live: Registry, attack: str) -> None:
    statements, expected = ATTACKS[attack]
    _sql(live, *statements)
    report = live.verify_audit()
    assert not report.ok
    assert report.scope == "state", report.message
    assert report.message.startswith("state differs from the log at "), report.message
    assert expected in report.message, report.message
    assert "\n" not in report.message


def test_verify_cli_names_the_first_difference(tmp_path: Path, artifact: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = Registry(url=url, artifact_root=str(tmp_path / "artifacts"), policy=Policy())
    reg.register("credit-risk", artifact, actor="alice")
    reg.transition("credit-risk", 1, "staging", actor="alice")
    _sql(reg, "UPDATE versions SET stage = 'production'")
    env = {
        "GOVFLOW_REGISTRY_URL": url,
        "GOVFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "PATH": "/usr/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "govflow", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "state differs from the log at credit-risk/1: stage is production, the log says staging"
    )


def test_rewriting_log_and_state_together_needs_the_chain(live: Registry) -> None:
    """Editing an event's payload to match an edited table breaks the chain instead."""
    edited = "replace(CAST(payload AS TEXT), '0.8', '0.99')"
    if live.db.dialect == "postgresql":
        edited = f"CAST({edited} AS JSON)"
    _sql(
        live,
        "UPDATE versions SET metrics = '{\"auc\": 0.99}' WHERE version = 1",
        f"UPDATE audit_events SET payload = {edited} WHERE seq = 2",
    )
    report = live.verify_audit()  # seq 1 is the seeded policy, seq 2 the registration
    assert not report.ok and report.scope == "chain" and report.first_bad_seq == 2


def test_replay_covers_every_column_of_every_state_table() -> None:
    """A column added to a state table without being bound to the log fails here."""
    from registry import replay, state_check
    from registry.db.tables import metadata

    covered = {
        "models": {"name", "description", "created_at", "created_by", "last_version"},
        "versions": {"version", "drift_reference", *replay.VERSION_FIELDS} - {"drift_reference_sha256"},
        "aliases": {"alias", "updated_at", "updated_by"},
        "alias_history": {"alias", "version", "previous", "actor", "at"},
        "policies": {"sha256", "document", "recorded_at", "recorded_by"},
        "policy_history": {"sha256", "set_by", "set_at", "reason"},
        **{table: set(cols) for _, table, cols, *_ in state_check._CHILDREN},
    }
    covered["waivers"] = covered["waivers"] - {"evidence_at"} | {"evidence_id"}  # joined to its result
    keys = {"id", "model_id", "version_id"}  # surrogate keys, compared through what they point at
    # Credentials change outside the log's state: users (salted token hashes) and one-time codes.
    not_state = {"audit_events", "audit_head", "users", "approval_codes"}
    for table in metadata.sorted_tables:
        if table.name in not_state:
            continue
        assert table.name in covered, f"{table.name} is not replayed"
        missing = {c.name for c in table.columns} - keys - covered[table.name]
        assert not missing, f"{table.name}: {sorted(missing)} not compared with the log"
