"""Errors over HTTP: problem+json with the govflow type and field, the right status, one CLI line."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from registry import errors
from registry.remote import RemoteRegistry

PROBLEM_KEYS = {"type", "title", "status", "detail", "govflow_error", "field", "model", "version"}


def _get(h: Any, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))
    return httpx.request(kw.pop("method", "GET"), h.url + path, headers=headers, **kw)


def test_health_is_open_and_says_nothing(registry_server: Any) -> None:
    r = _get(registry_server, "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_openapi_lists_the_api(registry_server: Any) -> None:
    paths = _get(registry_server, "/openapi.json").json()["paths"]
    for p in (
        "/api/v1/resolve",
        "/api/v1/models/{name}/versions/{version}/approve",
        "/api/v1/blobs/{sha256}",
    ):
        assert p in paths


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic YWRtaW46YWRtaW4=", "Bearer gft_nope", "Bearer a.b.c"]
)
def test_no_or_bad_credential_is_401_problem(registry_server: Any, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = httpx.get(registry_server.url + "/api/v1/models", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
    doc = r.json()
    assert PROBLEM_KEYS <= doc.keys()
    assert doc["type"] == "urn:govflow:error:Unauthenticated" and doc["govflow_error"] == "Unauthenticated"
    assert "\n" not in doc["detail"] and doc["detail"]


def test_a_raw_token_without_bearer_is_refused(registry_server: Any) -> None:
    r = httpx.get(
        registry_server.url + "/api/v1/models", headers={"Authorization": registry_server.admin_token}
    )
    assert r.status_code == 401


def test_not_found_names_the_model(registry_server: Any) -> None:
    r = _get(registry_server, "/api/v1/models/ghost/versions/1", registry_server.admin_token)
    doc = r.json()
    assert r.status_code == 404 and doc["govflow_error"] == "ModelNotFound" and doc["model"] == "ghost"
    with pytest.raises(errors.ModelNotFound):
        registry_server.client().get_version("ghost", 1)


@pytest.mark.parametrize("path", ["/api/v1/models/churn/versions/one", "/api/v1/models/churn/versions/1.5"])
def test_a_string_where_an_int_belongs_is_400_naming_the_field(registry_server: Any, path: str) -> None:
    r = _get(registry_server, path, registry_server.admin_token)
    assert r.status_code == 400
    doc = r.json()
    assert doc["govflow_error"] == "InvalidInput" and doc["field"] == "version"
    assert doc["detail"].startswith("version:")


def test_a_body_of_the_wrong_shape_is_400_naming_the_field(registry_server: Any) -> None:
    h = registry_server
    r = _get(h, "/api/v1/models/churn/rollback", h.admin_token, method="POST", json={"reasn": "typo"})
    assert r.status_code == 400 and r.json()["field"] in {"reason", "reasn"}
    r = _get(
        h,
        "/api/v1/models/churn/rollback",
        h.admin_token,
        method="POST",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert (
        r.status_code == 400 and r.json()["govflow_error"] == "InvalidInput" and r.json()["field"] == "body"
    )


def test_refusal_is_409_and_rebuilt_as_the_same_class(team: dict[str, Any], registry_server: Any) -> None:
    with pytest.raises(errors.ApprovalRequired) as caught:
        team["olga"].transition("churn", 1, "production")
    assert caught.value.model == "churn" and caught.value.version == 1
    r = _get(
        registry_server,
        "/api/v1/models/churn/versions/1/transition",
        registry_server.admin_token,
        method="POST",
        json={"stage": "production"},
    )
    assert r.status_code == 409 and r.json()["govflow_error"] == "ApprovalRequired"


def test_unknown_route_is_a_problem(registry_server: Any) -> None:
    r = _get(registry_server, "/api/v1/nothing-here", registry_server.admin_token)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_unexpected_error_is_500_without_internals(
    registry_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = registry_server

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret-internal-detail /etc/passwd")

    monkeypatch.setattr(h.registry, "models", boom)
    r = _get(h, "/api/v1/models", h.admin_token)
    assert r.status_code == 500
    assert "secret" not in r.text and r.json()["govflow_error"] == "GovflowError"
    with pytest.raises(errors.GovflowError):
        h.client().models()


def test_an_unreachable_server_is_one_storage_error_naming_the_url() -> None:
    client = RemoteRegistry("http://127.0.0.1:9", token="gft_x")
    with pytest.raises(errors.StorageError) as caught:
        client.models()
    assert "http://127.0.0.1:9" in str(caught.value) and "\n" not in str(caught.value)


def test_client_without_token_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GOVFLOW_TOKEN", "GOVFLOW_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(errors.Unauthenticated, match="no token: set GOVFLOW_TOKEN"):
        RemoteRegistry("http://127.0.0.1:9")


def test_token_file_is_read(registry_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("GOVFLOW_TOKEN", raising=False)
    path = tmp_path / "tok"
    path.write_text(registry_server.admin_token + "\n")
    monkeypatch.setenv("GOVFLOW_TOKEN_FILE", str(path))
    assert RemoteRegistry(registry_server.url).models() == []


def _cli(h: Any, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env["GOVFLOW_REGISTRY_URL"] = h.url
    if token:
        env["GOVFLOW_TOKEN"] = token
    code = "from govflow.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_in_client_mode_without_token_prints_one_line_and_exits_2(registry_server: Any) -> None:
    out = _cli(registry_server, "models")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no token" in lines[0]


def test_cli_in_client_mode_with_a_revoked_token_prints_one_line(registry_server: Any) -> None:
    h = registry_server
    token = h.token("reader", name="gone")
    h.users("revoke_user", "gone")
    out = _cli(h, "models", token=token)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "revoked" in lines[0]


def test_resolve_fast_path_behaves_like_the_documented_route(
    team: dict[str, Any], registry_server: Any
) -> None:
    h = registry_server
    auth = {"Authorization": f"Bearer {h.admin_token}"}
    r = httpx.get(h.url + "/api/v1/resolve", headers=auth)
    assert r.status_code == 400 and r.json()["field"] == "ref"
    r = httpx.get(h.url + "/api/v1/resolve", params={"ref": "churn/1"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(h.url + "/api/v1/resolve", params={"ref": "churn@nowhere"}, headers=auth)
    assert r.status_code == 404 and r.json()["govflow_error"] == "AliasNotFound"
    r = httpx.get(h.url + "/api/v1/resolve", params={"ref": "churn/1"}, headers=auth)
    assert r.status_code == 200 and r.json()["version"] == 1
    assert "/api/v1/resolve" in httpx.get(h.url + "/openapi.json").json()["paths"]


def test_an_oversized_json_body_is_refused_before_it_is_read(registry_server: Any, unchanged: Any) -> None:
    from registry.service.limits import DEFAULT_MAX_JSON

    h = registry_server
    auth = {"Authorization": f"Bearer {h.admin_token}", "Content-Type": "application/json"}
    big = b'{"action": "custom.x", "payload": {"blob": "' + b"x" * DEFAULT_MAX_JSON + b'"}}'
    with unchanged():
        r = httpx.post(h.url + "/api/v1/events", content=big, headers=auth)
        assert r.status_code == 413 and r.json()["field"] == "body"

        def chunks() -> Any:
            for i in range(0, len(big), 1 << 20):
                yield big[i : i + (1 << 20)]

        r = httpx.post(h.url + "/api/v1/events", content=chunks(), headers=auth)
        assert r.status_code == 413 and r.json()["field"] == "body"


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidInput("name: bad", field="name"), 400),
        (errors.PolicyError("policy: bad", field="approvals"), 400),
        (errors.Forbidden("x may not", field="role"), 403),
        (errors.VersionNotFound("churn/9 not found", model="churn", version=9), 404),
        (errors.ArtifactNotFound("artifact a not found", location="s3://b/k"), 404),
        (errors.SeparationOfDuties("bob registered churn/1", model="churn", version=1), 409),
        (errors.DigestMismatch("bytes hash to x", location="file:///a"), 409),
        (errors.AuditChainBroken("audit chain broken at seq 7: x", seq=7), 409),
        (errors.StorageError("database unreachable"), 503),
        (errors.SchemaOutdated("run govflow db upgrade"), 503),
        (errors.ArtifactStoreError("s3 down", location="s3://b"), 502),
        (errors.DeployError("target failed"), 400),
    ],
)
def test_each_error_maps_to_its_status_and_comes_back_as_its_class(
    registry_server: Any, monkeypatch: pytest.MonkeyPatch, exc: errors.GovflowError, status: int
) -> None:
    h = registry_server

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise exc

    monkeypatch.setattr(h.registry, "models", refuse)
    r = _get(h, "/api/v1/models", h.admin_token)
    doc = r.json()
    assert r.status_code == status == doc["status"]
    assert doc["govflow_error"] == type(exc).__name__ and doc["detail"] == str(exc)
    with pytest.raises(type(exc)) as caught:
        h.client().models()
    back = caught.value
    assert type(back) is type(exc) and str(back) == str(exc)
    assert (back.model, back.version) == (exc.model, exc.version)
    assert getattr(back, "field", None) == getattr(exc, "field", None)
    for attr in ("seq", "location"):
        assert getattr(back, attr, None) == getattr(exc, attr, None)
