"""Deploy targets: serving convergence (and its failures), release manifests (local and S3)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deployments.targets import (
    DeployResult,
    ManifestTargetSpec,
    NoTargetSpec,
    ServingTargetSpec,
    make_target,
)
from registry.errors import DeployError, InvalidInput
from tests.deployments.support import APPROVER, MODEL, TOKEN, blob_path, promote, register


def _events(reg, action: str) -> list:
    return [e for e in reg.audit_log(MODEL) if e.action == action]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- make_target ------------------------------------------------------------------------------


def test_make_target_from_config_dicts() -> None:
    assert type(make_target({"kind": "serving"})).__name__ == "ServingTarget"
    assert make_target({"kind": "serving", "url": "http://h:1", "timeout": 2}).spec == ServingTargetSpec(
        kind="serving", url="http://h:1", timeout=2.0
    )
    assert type(make_target({"kind": "manifest", "path": "/tmp/m.json"})).__name__ == "ManifestTarget"
    assert type(make_target(NoTargetSpec(kind="none"))).__name__ == "NoTarget"
    for bad in (
        {"kind": "helm"},
        {"kind": "manifest"},
        {"kind": "serving", "timeout": 0},
        {"kind": "none", "x": 1},
    ):
        with pytest.raises(InvalidInput, match="deploy target"):
            make_target(bad)


# --- serving ----------------------------------------------------------------------------------


def test_serving_target_converges_and_audits(sqlite_registry, estimators, serve_app, monkeypatch) -> None:
    monkeypatch.setenv("GOVFLOW_SERVE_TOKEN", TOKEN)
    reg = sqlite_registry
    a, b = estimators
    v1 = register(reg, a)
    promote(reg, v1)
    srv = serve_app(reg, poll=0)  # only the target's /reload can make it converge
    v2 = register(reg, b)
    promote(reg, v2)
    result = make_target({"kind": "serving", "url": srv.url, "timeout": 10}).deploy(
        reg, MODEL, v2, actor="ci"
    )
    assert isinstance(result, DeployResult)
    assert (result.target, result.version, result.converged, result.location) == (
        "serving",
        v2,
        True,
        srv.url,
    )
    assert result.sha256 == reg.get_version(MODEL, v2).artifact.sha256
    assert result.detail["reload"] == "sent"
    (event,) = _events(reg, "model.deployed")
    assert event.version == v2 and event.actor == "ci"
    assert event.payload["target"] == "serving" and event.payload["sha256"] == result.sha256

    reg.rollback(MODEL, reason="bad", actor="carol")
    back = make_target(ServingTargetSpec(kind="serving", url=srv.url, timeout=10)).deploy(reg, MODEL, v1)
    assert back.version == v1


def test_serving_target_refuses_a_version_not_in_production(sqlite_registry, estimators, serve_app) -> None:
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    v2 = register(reg, estimators[1])
    reg.transition(MODEL, v2, "staging", actor="alice")
    with pytest.raises(DeployError, match="staging, not production"):
        make_target({"kind": "serving", "url": "http://127.0.0.1:1"}).deploy(reg, MODEL, v2)


def test_serving_target_fails_when_no_server(sqlite_registry, estimators) -> None:
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(DeployError, match="did not converge") as info:
        make_target({"kind": "serving", "url": url, "timeout": 0.5}).deploy(reg, MODEL, v1)
    assert info.value.reason == "timeout"
    (event,) = _events(reg, "model.deploy_failed")
    assert event.payload["location"] == url and "did not converge" in event.payload["error"]
    assert _events(reg, "model.deployed") == []


def test_serving_target_fails_fast_when_the_server_cannot_load(
    sqlite_registry, estimators, serve_app, monkeypatch
) -> None:
    monkeypatch.setenv("GOVFLOW_SERVE_TOKEN", TOKEN)
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    srv = serve_app(reg, poll=0)
    v2 = register(reg, estimators[1])
    path = blob_path(reg, v2)
    path.write_bytes(b"not the model")
    promote(reg, v2)
    with pytest.raises(DeployError, match="could not load") as info:
        make_target({"kind": "serving", "url": srv.url, "timeout": 30}).deploy(reg, MODEL, v2)
    assert info.value.reason == "load failed"


def test_serving_target_without_a_token_waits_for_the_servers_poll(
    sqlite_registry, estimators, serve_app
) -> None:
    reg = sqlite_registry
    promote(reg, register(reg, estimators[0]))
    srv = serve_app(reg)  # polls every POLL seconds; /reload needs a token the target does not have
    v2 = register(reg, estimators[1])
    promote(reg, v2)
    result = make_target({"kind": "serving", "url": srv.url, "timeout": 10}).deploy(reg, MODEL, v2)
    assert (result.converged, result.version) == (True, v2)
    assert result.detail["reload"] == "skipped: no reload token, the server's poll"
    (event,) = _events(reg, "model.deployed")
    assert event.version == v2


@pytest.mark.parametrize("server_token", [TOKEN, None], ids=["wrong token", "reload off"])
def test_serving_target_refused_a_reload_fails_at_once_and_is_audited(
    sqlite_registry, estimators, serve_app, monkeypatch, server_token
) -> None:
    reg = sqlite_registry
    promote(reg, register(reg, estimators[0]))
    srv = serve_app(reg, poll=0, reload_token=server_token)
    v2 = register(reg, estimators[1])
    promote(reg, v2)
    monkeypatch.setenv("GOVFLOW_SERVE_TOKEN", "not-the-servers-token-0000")
    target = make_target({"kind": "serving", "url": srv.url, "timeout": 30})
    with pytest.raises(DeployError, match="refused the reload") as info:
        target.deploy(reg, MODEL, v2)
    assert info.value.reason == "reload refused"
    assert str(info.value).startswith(f"{srv.url} refused the reload ({401 if server_token else 403}): ")
    (event,) = _events(reg, "model.deploy_failed")
    assert "refused the reload" in event.payload["error"]
    assert _events(reg, "model.deployed") == []


@pytest.fixture
def stuck_server() -> Iterator[str]:
    """A server that answers /reload and /model but never moves off version 1."""
    from fastapi import FastAPI

    from deployments.server import ServerThread

    app = FastAPI()
    app.post("/reload")(lambda: {"changed": False, "version": 1, "status": "ok", "degraded": None})
    app.get("/model")(lambda: {"name": MODEL, "version": 1, "sha256": "0" * 64})
    with ServerThread(app) as srv:
        yield srv.url


def test_serving_target_fails_when_not_converging(sqlite_registry, estimators, stuck_server) -> None:
    reg = sqlite_registry
    promote(reg, register(reg, estimators[0]))
    v2 = register(reg, estimators[1])
    promote(reg, v2)
    with pytest.raises(DeployError, match="serving version 1"):
        make_target({"kind": "serving", "url": stuck_server, "timeout": 0.5}).deploy(reg, MODEL, v2)


# --- manifest ---------------------------------------------------------------------------------


def test_manifest_target_writes_expected_json(sqlite_registry, estimators, tmp_path: Path) -> None:
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    out = tmp_path / "release" / "churn.json"
    before = datetime.now(UTC)
    result = make_target(ManifestTargetSpec(kind="manifest", path=str(out))).deploy(
        reg, MODEL, v1, actor="ci"
    )
    mv = reg.get_version(MODEL, v1)
    manifest = json.loads(out.read_text())
    assert manifest == {
        "schema": "govflow.release/v1",
        "model": MODEL,
        "version": v1,
        "sha256": mv.artifact.sha256,
        "artifact_uri": mv.artifact.uri,
        "artifact_format": "skops",
        "size": mv.artifact.size,
        "stage": "production",
        "approved_by": [APPROVER],
        "registered_by": "alice",
        "deployed_by": "ci",
        "time": manifest["time"],
    }
    at = datetime.fromisoformat(manifest["time"])
    assert at.tzinfo is not None and before - timedelta(seconds=1) <= at <= datetime.now(UTC)
    assert [p.name for p in out.parent.iterdir()] == ["churn.json"]  # no temp file left behind
    assert (result.location, result.converged, result.detail["approved_by"]) == (str(out), True, [APPROVER])
    (event,) = _events(reg, "model.deployed")
    assert event.payload["target"] == "manifest" and event.payload["location"] == str(out)


def test_manifest_after_rollback_names_the_restored_versions_approvers(
    sqlite_registry, estimators, tmp_path: Path
) -> None:
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    v2 = register(reg, estimators[1])
    reg.transition(MODEL, v2, "staging", actor="alice")
    reg.approve(MODEL, v2, actor="dave")
    reg.transition(MODEL, v2, "production", actor="alice")
    out = tmp_path / "m.json"
    target = make_target({"kind": "manifest", "path": str(out)})
    target.deploy(reg, MODEL, v2)
    assert json.loads(out.read_text())["approved_by"] == ["dave"]
    reg.rollback(MODEL, reason="bad", actor="carol")
    target.deploy(reg, MODEL, v1)
    manifest = json.loads(out.read_text())
    assert (manifest["version"], manifest["approved_by"]) == (v1, [APPROVER])


def test_manifest_target_refuses_unwritable_path(sqlite_registry, estimators, tmp_path: Path) -> None:
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DeployError, match="cannot write"):
        make_target({"kind": "manifest", "path": str(blocker / "m.json")}).deploy(reg, MODEL, v1)
    assert len(_events(reg, "model.deploy_failed")) == 1


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    import boto3

    env = {
        "GOVFLOW_S3_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.session.Session().client("s3", endpoint_url=moto_endpoint)
    if "releases" not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket="releases")
    return client


def test_manifest_target_writes_to_s3(sqlite_registry, estimators, s3) -> None:
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    result = make_target({"kind": "manifest", "path": "s3://releases/churn/current.json"}).deploy(
        reg, MODEL, v1
    )
    body = s3.get_object(Bucket="releases", Key="churn/current.json")["Body"].read()
    manifest = json.loads(body)
    assert (manifest["model"], manifest["version"]) == (MODEL, v1)
    assert manifest["sha256"] == result.sha256 == reg.get_version(MODEL, v1).artifact.sha256
    with pytest.raises(DeployError, match="s3://missing-bucket/m.json: cannot write"):
        make_target({"kind": "manifest", "path": "s3://missing-bucket/m.json"}).deploy(reg, MODEL, v1)
    with pytest.raises(InvalidInput, match="s3://bucket/key"):
        make_target({"kind": "manifest", "path": "s3://releases/"}).deploy(reg, MODEL, v1)


def test_no_target_deploys_nothing(sqlite_registry, estimators) -> None:
    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    result = make_target({"kind": "none"}).deploy(reg, MODEL, v1)
    assert (result.target, result.location, result.converged) == ("none", None, True)
    assert _events(reg, "model.deployed") == []
