"""The govflow CLI end to end, through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _make_cli(url: str, tmp_path: Path):
    env = {
        **os.environ,
        "GOVFLOW_REGISTRY_URL": url,
        "GOVFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "GOVFLOW_ACTOR": "alice",
        "COLUMNS": "200",
    }
    env.pop("GOVFLOW_POLICY", None)

    def run(*args: str, expect: int = 0, actor: str | None = None) -> subprocess.CompletedProcess[str]:
        e = dict(env, GOVFLOW_ACTOR=actor) if actor else env
        proc = subprocess.run(
            [sys.executable, "-m", "govflow", *args], env=e, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
        if expect == 2:
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            assert "Traceback" not in proc.stderr
        return proc

    return run


@pytest.fixture
def cli(backend_url: str, tmp_path: Path):
    """The CLI against a fresh registry on each backend."""
    return _make_cli(backend_url, tmp_path)


@pytest.fixture
def sqlite_cli(tmp_path: Path):
    """The CLI against a fresh SQLite registry (for backend-independent paths)."""
    return _make_cli(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path)


def test_cli_governed_lifecycle(cli, tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights-1")
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    data2 = tmp_path / "train2.csv"
    data2.write_text("a,b\n5,6\n")
    out = cli(
        "register",
        "churn",
        "--artifact",
        str(model),
        "--metric",
        "auc=0.91",
        "--param",
        "depth=4",
        "--dataset",
        f"train={data}",
        "--dataset",
        f"train={data2}",
        "--commit",
        "abc1234def",
        "--json",
    )
    reg = json.loads(out.stdout)
    assert {k: reg[k] for k in ("model", "version", "stage")} == {
        "model": "churn",
        "version": 1,
        "stage": "development",
    }
    assert len(reg["artifact_sha256"]) == 64
    cli("transition", "churn", "1", "staging")
    err = cli("approve", "churn", "1", expect=2).stderr
    assert "separation of duties" in err
    err = cli("transition", "churn", "1", "production", expect=2).stderr
    assert "needs 1 approval" in err
    cli("approve", "churn", "1", "--reason", "ok", actor="bob")
    cli("transition", "churn", "1", "production", actor="bob")
    shown = json.loads(cli("show", "churn@production", "--json").stdout)
    assert shown["version"] == 1 and shown["stage"] == "production" and shown["aliases"] == ["production"]
    assert shown["approvals"][0]["actor"] == "bob"
    assert [d["rows"] for d in shown["lineage"]["datasets"]] == [2, 1]
    assert shown["lineage"]["code"]["commit"] == "abc1234def"
    model.write_bytes(b"weights-2")
    cli("register", "churn", "--artifact", str(model))
    cli("transition", "churn", "2", "staging")
    cli("approve", "churn", "2", actor="bob")
    cli("transition", "churn", "2", "production", actor="bob")
    rolled = json.loads(cli("rollback", "churn", "--reason", "drift", "--json", actor="ops").stdout)
    assert (rolled["demoted"], rolled["restored"]) == (2, 1)
    assert "no version in production" not in cli("rollback", "churn", "--reason", "x", expect=2).stderr
    hits = json.loads(cli("impact", "--dataset", str(data), "--json").stdout)
    assert [(h["model"], h["version"]) for h in hits] == [("churn", 1)]
    at = json.loads(cli("production-at", "churn", "2999-01-01T00:00:00Z", "--json").stdout)
    assert at["version"] == 1
    log = json.loads(cli("audit", "log", "--json").stdout)
    assert log[-1]["action"] == "model.rolled_back" and log[-1]["actor"] == "ops"
    assert "OK" in cli("audit", "verify").stdout
    cli("audit", "export", str(tmp_path / "audit.jsonl"))
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == len(log)


def test_cli_refusals(sqlite_cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    model = tmp_path / "m.bin"
    model.write_bytes(b"w")
    assert (
        "metric auc"
        in cli("register", "churn", "--artifact", str(model), "--metric", "auc=nan", expect=2).stderr
    )
    assert (
        "metric auc"
        in cli("register", "churn", "--artifact", str(model), "--metric", "auc=x", expect=2).stderr
    )
    assert "name: 'Churn'" in cli("register", "Churn", "--artifact", str(model), expect=2).stderr
    assert (
        "not a readable file" in cli("register", "churn", "--artifact", str(tmp_path / "no"), expect=2).stderr
    )
    assert "'churn' not found" in cli("show", "churn/1", expect=2).stderr
    assert "'churn' not found" in cli("run", "rollback", "churn", "--reason", "x", expect=2).stderr
    cli("register", "churn", "--artifact", str(model))
    assert "churn/9 not found" in cli("approve", "churn", "9", expect=2).stderr
    assert "not allowed" in cli("transition", "churn", "1", "production", expect=2).stderr
    assert "is not one of" in cli("transition", "churn", "1", "live", expect=2).stderr
    cli("transition", "churn", "1", "staging")
    cli("evidence", "add", "churn", "1", "--gate", "fairness", "--failed", "--value", "0.3")
    assert "KEY=VALUE" in cli("register", "churn", "--artifact", str(model), "--tag", "oops", expect=2).stderr
    # Nothing was written by any refusal: the policy the first registration seeded, one
    # registration, one transition, one evidence.
    assert [e["action"] for e in json.loads(cli("audit", "log", "--json").stdout)] == [
        "policy.recorded",
        "version.registered",
        "version.transitioned",
        "evidence.added",
    ]


def test_audit_verify_exit_code_on_tampering(sqlite_cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    model = tmp_path / "m.bin"
    model.write_bytes(b"w")
    cli("register", "churn", "--artifact", str(model))
    cli("register", "churn", "--artifact", str(model))
    import sqlite3

    con = sqlite3.connect(tmp_path / "registry.db")
    con.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    con.commit()
    con.close()
    proc = cli("audit", "verify", expect=1)
    assert "seq 2" in proc.stderr
