"""Artifact bytes over HTTP: streamed uploads, digest checks on both sides, no partial writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry import errors

MiB = 1024 * 1024


def _blob_path(h: Any, sha256: str) -> Path:
    return Path(h.registry.artifacts.root) / "sha256" / sha256[:2] / sha256


def test_tampered_blob_is_caught_on_the_client_and_leaves_no_file(
    team: dict[str, Any], registry_server: Any, tmp_path: Path
) -> None:
    h = registry_server
    ref = team["rita"].resolve("churn/1")
    stored = _blob_path(h, ref.artifact_sha256)
    stored.write_bytes(b"swapped on the server's disk")
    dest = tmp_path / "out" / "model.bin"
    with pytest.raises(errors.DigestMismatch):
        team["rita"].artifacts.get(ref.artifact_sha256, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temp file either


def test_download_round_trips(team: dict[str, Any], tmp_path: Path) -> None:
    ref = team["rita"].resolve("churn/1")
    dest = tmp_path / "model.bin"
    blob = team["rita"].artifacts.get(ref.artifact_sha256, dest)
    assert dest.read_bytes() == team["path"].read_bytes() and blob.sha256 == ref.artifact_sha256
    assert team["rita"].artifacts.exists(ref.artifact_sha256)
    assert not team["rita"].artifacts.exists("0" * 64)


def test_missing_blob_is_artifact_not_found(registry_server: Any, tmp_path: Path) -> None:
    with pytest.raises(errors.ArtifactNotFound):
        registry_server.client().artifacts.get("a" * 64, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_large_upload_streams_through_in_chunks(registry_server: Any, tmp_path: Path) -> None:
    h = registry_server
    big = tmp_path / "big.bin"
    chunk = os.urandom(MiB)
    with open(big, "wb") as fh:
        for i in range(24):  # 24 MiB: many times the server's and the client's read chunks
            fh.write(chunk[i:] + chunk[:i])
    pipe = h.client(h.token("pipeline", name="petra"))
    mv = pipe.register("big", big)
    assert mv.artifact.size == 24 * MiB
    assert _blob_path(h, mv.artifact.sha256).stat().st_size == 24 * MiB
    assert hashlib.sha256(big.read_bytes()).hexdigest() == mv.artifact.sha256


def test_an_upload_whose_bytes_do_not_match_the_digest_is_refused(
    registry_server: Any, unchanged: Any
) -> None:
    h = registry_server
    claimed = hashlib.sha256(b"what I say").hexdigest()
    token = h.token("pipeline", name="pia")
    with unchanged():
        r = httpx.put(
            f"{h.url}/api/v1/blobs/{claimed}",
            content=b"what I send",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert (
        r.status_code == 409
        and r.json()["govflow_error"] == "DigestMismatch"
        and r.json()["field"] == "sha256"
    )
    assert not h.registry.artifacts.exists(claimed)


def test_an_upload_over_the_cap_is_refused_and_nothing_is_kept(
    registry_server: Any, tmp_path: Path, unchanged: Any
) -> None:
    h = registry_server
    spool = tmp_path / "spool"
    spool.mkdir()
    state = h.app.state
    saved = (state.max_upload, state.upload_dir)
    state.max_upload, state.upload_dir = 3 * MiB, str(spool)
    try:
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(4 * MiB))
        pipe = h.client(h.token("pipeline", name="pat"))
        with unchanged(), pytest.raises(errors.InvalidInput, match="limit"):
            pipe.register("big", big)
        # Without a Content-Length the cap holds while streaming.
        sha = hashlib.sha256(big.read_bytes()).hexdigest()

        def body() -> Any:
            yield big.read_bytes()

        with unchanged():
            r = httpx.put(
                f"{h.url}/api/v1/blobs/{sha}",
                content=body(),
                headers={"Authorization": f"Bearer {h.admin_token}"},
            )
        assert r.status_code == 413 and r.json()["field"] == "body"
        assert list(spool.iterdir()) == []
        assert not h.registry.artifacts.exists(sha)
    finally:
        state.max_upload, state.upload_dir = saved


@pytest.mark.parametrize("digest", ["A" * 64, "g" * 64, "abc", "../../etc/passwd"])
def test_a_bad_digest_is_refused(registry_server: Any, digest: str) -> None:
    h = registry_server
    r = httpx.put(
        f"{h.url}/api/v1/blobs/{digest}", content=b"x", headers={"Authorization": f"Bearer {h.admin_token}"}
    )
    assert r.status_code in (400, 404)
    assert r.headers["content-type"] == "application/problem+json"


def test_register_of_a_blob_never_uploaded_is_refused(registry_server: Any, unchanged: Any) -> None:
    h = registry_server
    pipe = h.client(h.token("pipeline", name="pam"))
    with unchanged(), pytest.raises(errors.ArtifactNotFound):
        pipe.register_stored("ghost", "b" * 64)


def test_export_streams_the_chain_as_jsonl(team: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    count = team["rita"].export_audit(out)
    lines = out.read_text().splitlines()
    assert count == len(lines) == len(team["rita"].audit_log()) and count > 0
    assert team["rita"].verify_audit().ok


def test_an_unusable_spool_folder_is_one_store_error(registry_server: Any, tmp_path: Path) -> None:
    h = registry_server
    state = h.app.state
    saved = state.upload_dir
    state.upload_dir = str(tmp_path / "no" / "such" / "folder")
    try:
        pipe = h.client(h.token("pipeline", name="sp"))
        model = tmp_path / "m.bin"
        model.write_bytes(b"m")
        with pytest.raises(errors.ArtifactStoreError, match="upload spool"):
            pipe.register("churn", model)
    finally:
        state.upload_dir = saved


def test_gc_from_a_client_is_refused_in_one_line(registry_server: Any) -> None:
    from registry.gc import collect_garbage

    client = registry_server.client()
    assert client.artifact_root.endswith("/api/v1/blobs")
    with pytest.raises(errors.Refused, match="on the server"):
        collect_garbage(client, dry_run=True)
