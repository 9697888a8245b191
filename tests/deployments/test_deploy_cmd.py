"""``govflow deploy NAME``: the current production version through the configured target, audited."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from registry import Policy, Registry, Stage

MODEL = "credit-risk"


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'registry.db'}"
        self.artifacts = str(tmp_path / "artifacts")
        self.manifest = tmp_path / "releases" / "release.json"
        self.config = tmp_path / "pipeline.yaml"
        self.tmp = tmp_path
        self.write_config({"kind": "manifest", "path": "releases/release.json"})

    def write_config(self, deploy: dict, **extra) -> Path:
        cfg = {
            "model_name": MODEL,
            "target": "default",
            "data": {"path": "data.csv"},
            "deploy": deploy,
            **extra,
        }
        self.config.write_text(yaml.safe_dump(cfg))
        return self.config

    def registry(self) -> Registry:
        return Registry(url=self.url, artifact_root=self.artifacts, policy=Policy())

    def cli(self, *args: str, expect: int = 0, actor: str = "ops-oncall") -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            GOVFLOW_REGISTRY_URL=self.url,
            GOVFLOW_ARTIFACT_ROOT=self.artifacts,
            GOVFLOW_ACTOR=actor,
            COLUMNS="300",
        )
        env.pop("GOVFLOW_POLICY", None)
        proc = subprocess.run(
            [sys.executable, "-m", "govflow", *args],
            env=env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
        if expect == 2:
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
        return proc


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def _promote(reg: Registry, n: int, folder: Path) -> None:
    blob = folder / f"model-{n}.bin"
    blob.write_bytes(f"weights {n}".encode())
    reg.register(MODEL, blob, actor="ml-pipeline")
    reg.transition(MODEL, n, "staging", actor="ml-pipeline")
    reg.approve(MODEL, n, actor="risk-officer")
    reg.transition(MODEL, n, "production", actor="risk-officer")


def _deployed(reg: Registry) -> list:
    return [e for e in reg.audit_log(model=MODEL) if e.action in ("model.deployed", "model.deploy_failed")]


def test_deploy_writes_the_production_version_and_audits_it(setup: Setup) -> None:
    reg = setup.registry()
    _promote(reg, 1, setup.tmp)
    _promote(reg, 2, setup.tmp)
    out = setup.cli("deploy", MODEL, "--config", str(setup.config)).stdout.strip()
    sha = reg.get_version(MODEL, 2).artifact.sha256
    assert out == f"deployed {MODEL}/2 to manifest {setup.manifest} sha256 {sha}"
    manifest = json.loads(setup.manifest.read_text())
    assert (manifest["version"], manifest["sha256"], manifest["deployed_by"]) == (2, sha, "ops-oncall")
    assert manifest["approved_by"] == ["risk-officer"]
    (event,) = _deployed(reg)
    assert (event.action, event.version, event.actor) == ("model.deployed", 2, "ops-oncall")
    assert event.payload["target"] == "manifest" and event.payload["sha256"] == sha
    reg.close()


def test_deploy_json(setup: Setup) -> None:
    reg = setup.registry()
    _promote(reg, 1, setup.tmp)
    body = json.loads(setup.cli("deploy", MODEL, "--config", str(setup.config), "--json").stdout)
    assert (body["target"], body["version"], body["converged"]) == ("manifest", 1, True)
    assert body["location"] == str(setup.manifest)
    reg.close()


def test_deploy_refuses_with_nothing_in_production(setup: Setup) -> None:
    reg = setup.registry()
    blob = setup.tmp / "m.bin"
    blob.write_bytes(b"staged only")
    reg.register(MODEL, blob, actor="ml-pipeline")
    reg.transition(MODEL, 1, "staging", actor="ml-pipeline")
    err = setup.cli("deploy", MODEL, "--config", str(setup.config), expect=2).stderr
    assert "no version in production" in err
    assert not setup.manifest.exists() and _deployed(reg) == []
    reg.close()


def test_deploy_after_a_rollback_outside_a_flow_deploys_the_restored_version(setup: Setup) -> None:
    reg = setup.registry()
    _promote(reg, 1, setup.tmp)
    _promote(reg, 2, setup.tmp)
    setup.cli("deploy", MODEL, "--config", str(setup.config))
    assert json.loads(setup.manifest.read_text())["version"] == 2
    # The rollback happens from the terminal; the manifest still names version 2 until a deploy.
    setup.cli("rollback", MODEL, "--reason", "bad scores in the morning batch", actor="risk-officer")
    assert json.loads(setup.manifest.read_text())["version"] == 2
    setup.cli("deploy", MODEL, "--config", str(setup.config))
    manifest = json.loads(setup.manifest.read_text())
    assert (manifest["version"], manifest["sha256"]) == (1, reg.get_version(MODEL, 1).artifact.sha256)
    assert reg.get_version(MODEL, 2).stage == Stage.ARCHIVED
    assert [e.version for e in _deployed(reg)] == [2, 1]
    reg.close()


def test_deploy_refuses_a_name_the_config_is_not_about(setup: Setup) -> None:
    reg = setup.registry()
    _promote(reg, 1, setup.tmp)
    err = setup.cli("deploy", "churn", "--config", str(setup.config), expect=2).stderr
    assert "model_name" in err and "churn" in err
    assert not setup.manifest.exists()
    reg.close()


@pytest.mark.parametrize(
    ("deploy", "field"),
    [({"kind": "ftp", "path": "x"}, "deploy"), ({"kind": "serving", "timeout": "soon"}, "timeout")],
)
def test_deploy_refuses_a_bad_config(setup: Setup, deploy: dict, field: str) -> None:
    reg = setup.registry()
    _promote(reg, 1, setup.tmp)
    setup.write_config(deploy)
    assert field in setup.cli("deploy", MODEL, "--config", str(setup.config), expect=2).stderr
    assert _deployed(reg) == []
    reg.close()


def test_deploy_refuses_a_missing_config(setup: Setup) -> None:
    err = setup.cli("deploy", MODEL, "--config", str(setup.tmp / "nope.yaml"), expect=2).stderr
    assert "--config" in err


def test_deploy_that_does_not_converge_exits_2_and_is_audited_as_failed(setup: Setup) -> None:
    reg = setup.registry()
    _promote(reg, 1, setup.tmp)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    setup.write_config({"kind": "serving", "url": f"http://127.0.0.1:{port}", "timeout": 0.5})
    err = setup.cli("deploy", MODEL, "--config", str(setup.config), expect=2).stderr
    assert "did not converge" in err
    (event,) = _deployed(reg)
    assert event.action == "model.deploy_failed" and event.version == 1
    reg.close()


def test_deploy_without_config_uses_the_default_manifest(setup: Setup) -> None:
    reg = setup.registry()
    _promote(reg, 1, setup.tmp)
    out = setup.cli("deploy", MODEL).stdout
    default = setup.tmp / ".govflow" / "releases" / "release.json"
    assert str(default) in out
    assert json.loads(default.read_text())["version"] == 1
    reg.close()
