"""Registration, lineage, atomicity and the auditor's queries (invariants 1, 3, 7) on both backends."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from registry import CodeRef, DatasetRef, Lineage, Policy, Registry, RunRef, Stage
from registry import audit as audit_mod
from registry.errors import DigestMismatch, InvalidInput, ModelNotFound, PolicyError, VersionNotFound


def _count(reg: Registry, table: str) -> int:
    with reg.db.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_register_records_artifact_lineage_and_audit(registry: Registry, artifact: Path) -> None:
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    lineage = Lineage(
        datasets=[DatasetRef(role="train", uri="s3://data/train.csv", sha256="a" * 64, rows=10)],
        code=CodeRef(repo="git@example:ml.git", commit="c0ffee1234", dirty=True),
        run=RunRef(flow_run_id="run-1", flow_name="retrain"),
    )
    v = registry.register(
        "credit-risk",
        artifact,
        actor="alice",
        metrics={"auc": 0.91, "n": 3},
        params={"depth": 4, "solver": "lbfgs"},
        tags={"team": "risk"},
        lineage=lineage,
        input_schema=[{"name": "age", "dtype": "int64"}],
    )
    assert (v.version, v.stage, v.artifact.sha256) == (1, Stage.DEVELOPMENT, digest)
    stored = registry.get("credit-risk/1")
    assert stored.lineage == lineage
    assert stored.metrics == {"auc": 0.91, "n": 3.0}
    assert stored.params == {"depth": 4, "solver": "lbfgs"}
    assert stored.input_schema[0].name == "age"
    assert registry.artifacts.exists(digest)
    event = registry.audit_log()[-1]
    assert (event.action, event.actor, event.version) == ("version.registered", "alice", 1)
    assert event.payload["artifact"]["sha256"] == digest
    assert registry.register("credit-risk", artifact, actor="alice").version == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"metrics": {"auc": float("nan")}}, "metric auc: nan is not finite"),
        ({"metrics": {"auc": float("inf")}}, "metric auc: inf is not finite"),
        ({"metrics": {"auc": "high"}}, "metric auc: 'high' is not a number"),
        ({"metrics": {"auc": True}}, "metric auc: True is not a number"),
    ],
)
def test_bad_metrics_write_nothing(registry: Registry, artifact: Path, fields, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        registry.register("churn", artifact, actor="alice", **fields)
    assert _count(registry, "versions") == 0
    assert _count(registry, "audit_events") == 0
    assert _count(registry, "models") == 0


@pytest.mark.parametrize("name", ["Churn", "-x", "", "a" * 129, "has space"])
def test_bad_names_are_refused(registry: Registry, artifact: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="name"):
        registry.register(name, artifact, actor="alice")


def test_failed_transaction_leaves_nothing_but_the_blob(
    registry: Registry, artifact: Path, monkeypatch
) -> None:
    registry.register("churn", artifact, actor="alice")

    def boom(*args, **kwargs):
        raise RuntimeError("crash between version insert and audit append")

    monkeypatch.setattr(audit_mod, "append", boom)
    other = artifact.with_name("other.bin")
    other.write_bytes(b"other model")
    with pytest.raises(RuntimeError):
        registry.register("churn", other, actor="alice")
    monkeypatch.undo()
    # Invariant 3: no version, no event, and the counter is not burnt; invariant 7: the blob
    # was written first and is now an unreferenced orphan for gc.
    assert [v.version for v in registry.versions("churn")] == [1]
    assert [e.action for e in registry.audit_log()] == ["policy.recorded", "version.registered"]
    assert registry.artifacts.exists(hashlib.sha256(b"other model").hexdigest())
    assert registry.register("churn", other, actor="alice").version == 2
    assert registry.verify_audit().ok


def test_reads_verify_the_digest(registry: Registry, artifact: Path, tmp_path: Path) -> None:
    v = registry.register("churn", artifact, actor="alice")
    blob = Path(v.artifact.uri.removeprefix("file://"))
    blob.write_bytes(b"tampered")
    with pytest.raises(DigestMismatch, match="expected"):
        registry.artifacts.get(v.artifact.sha256, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_unknown_model_and_version(registry: Registry, artifact: Path) -> None:
    with pytest.raises(ModelNotFound, match="'nope' not found"):
        registry.get("nope/1")
    registry.register("churn", artifact, actor="alice")
    with pytest.raises(VersionNotFound, match="churn/7 not found"):
        registry.get("churn/7")
    with pytest.raises(InvalidInput, match="NAME/VERSION or NAME@ALIAS"):
        registry.get("churn")


def test_production_at_answers_from_history(registry: Registry, artifact: Path) -> None:
    t0 = datetime.now(UTC)
    for _ in range(2):
        n = registry.register("churn", artifact, actor="alice").version
        registry.transition("churn", n, "staging", actor="alice")
        registry.approve("churn", n, actor=f"approver{n}")
        registry.transition("churn", n, "production", actor="ops")
    assert registry.production_at("churn", t0).version is None
    history = registry.history("churn")
    first_promotion = next(h for h in history if h.kind == "promote" and h.version == 1)
    between = registry.production_at("churn", first_promotion.at + timedelta(microseconds=1))
    assert (between.version, between.approved_by, between.promoted_by) == (1, ["approver1"], "ops")
    now = registry.production_at("churn", datetime.now(UTC))
    assert (now.version, now.approved_by) == (2, ["approver2"])
    registry.rollback("churn", reason="drift", actor="ops")
    after = registry.production_at("churn", datetime.now(UTC))
    assert (after.version, after.how, after.approved_by) == (1, "rollback", ["approver1"])
    with pytest.raises(InvalidInput, match="timezone"):
        registry.production_at("churn", datetime(2026, 3, 3))


def test_impact_by_digest_uri_and_commit(registry: Registry, artifact: Path) -> None:
    d1 = DatasetRef(role="train", uri="s3://d/a.csv", sha256="1" * 64)
    d2 = DatasetRef(role="eval", uri="s3://d/b.csv", sha256="2" * 64)
    registry.register("a", artifact, actor="x", lineage=Lineage(datasets=[d1], code=CodeRef(commit="abc123")))
    registry.register(
        "b", artifact, actor="x", lineage=Lineage(datasets=[d1, d2], code=CodeRef(commit="def456"))
    )
    hits = registry.impact(digest="1" * 64)
    assert [(h["model"], h["version"], h["role"]) for h in hits] == [("a", 1, "train"), ("b", 1, "train")]
    assert [h["model"] for h in registry.impact(dataset="s3://d/b.csv")] == ["b"]
    assert [h["model"] for h in registry.impact(commit="abc1")] == ["a"]
    assert registry.impact(commit="ffff") == []


def test_policy_files_are_validated(tmp_path: Path) -> None:
    good = tmp_path / "p.toml"
    good.write_text('[stages.production]\napprovals = 2\ngates = ["accuracy"]\n[drift]\nact = 0.3\n')
    policy = Policy.load(good)
    assert policy.rule(Stage.PRODUCTION).approvals == 2 and policy.drift.act == 0.3
    yml = tmp_path / "p.yaml"
    yml.write_text("stages:\n  production:\n    approvals: -1\n")
    with pytest.raises(PolicyError, match="stages.production.approvals"):
        Policy.load(yml)
    unknown = tmp_path / "u.yaml"
    unknown.write_text("approvals_required: 3\n")
    with pytest.raises(PolicyError, match="approvals_required"):
        Policy.load(unknown)
    with pytest.raises(PolicyError, match="cannot read"):
        Policy.load(tmp_path / "missing.toml")


def test_shipped_head_matches_migration_scripts() -> None:
    from registry.db.migrate import HEAD, head_revision

    assert head_revision() == HEAD


def test_db_upgrade_is_idempotent(registry: Registry) -> None:
    from registry.db.migrate import HEAD

    assert registry.upgrade() == (HEAD, HEAD)


def test_database_outage_is_a_govflow_error(tmp_path: Path) -> None:
    from registry.errors import StorageError

    reg = Registry(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "a"), policy=Policy())
    (tmp_path / "r.db").unlink()
    (tmp_path / "r.db").mkdir()  # the file is now a folder: every connection fails
    reg.close()
    with pytest.raises(StorageError, match="registry"):
        reg.resolve("churn@production")
