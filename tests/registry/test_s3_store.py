"""The S3 artifact store against a real S3-compatible HTTP server (moto, loopback).

Covers the store contract on both stores, idempotent put, the key layout, the S3-side checksum,
multipart with flat memory, corruption, a dying endpoint, and the CLI with an s3:// root.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from registry import Policy, Registry
from registry.artifacts import LocalArtifactStore, open_store
from registry.artifacts.base import ArtifactStore, blob_key
from registry.artifacts.s3 import S3ArtifactStore
from registry.db.tables import versions
from registry.errors import ArtifactNotFound, ArtifactStoreError, DigestMismatch, InvalidInput
from registry.serialization import save
from tests.fixtures.s3 import BUCKET, DyingProxy

ROOT = Path(__file__).resolve().parents[2]


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _count_calls(store: S3ArtifactStore, *operations: str) -> list[str]:
    """Record the S3 operations the store's client sends (an observer, not a mock)."""
    seen: list[str] = []
    for op in operations:
        store.client.meta.events.register(f"before-call.s3.{op}", lambda op=op, **_: seen.append(op))
    return seen


# --- the contract, on both stores ---------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "store")
    return request.getfixturevalue("s3_store")


def test_put_get_roundtrip_and_listing(any_store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(3000)
    blob = any_store.put(_file(tmp_path / "a.bin", data))
    assert blob.sha256 == hashlib.sha256(data).hexdigest() and blob.size == len(data)
    assert blob.uri == any_store.uri_for(blob.sha256)
    assert any_store.exists(blob.sha256)

    got = any_store.get(blob.sha256, tmp_path / "out" / "a.bin")
    assert (tmp_path / "out" / "a.bin").read_bytes() == data and got.sha256 == blob.sha256

    listed = list(any_store.list_blobs())
    assert [b.sha256 for b in listed] == [blob.sha256]
    assert listed[0].size == len(data) and listed[0].modified is not None
    assert listed[0].modified.utcoffset() is not None  # timezone-aware
    st = any_store.stat(blob.sha256)
    assert st is not None and st.size == len(data)


def test_missing_blob_and_delete(any_store: ArtifactStore, tmp_path: Path) -> None:
    missing = "0" * 64
    assert not any_store.exists(missing) and any_store.stat(missing) is None
    with pytest.raises(ArtifactNotFound):
        any_store.get(missing, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    blob = any_store.put(_file(tmp_path / "a.bin", b"abc"))
    any_store.delete(blob.sha256)
    any_store.delete(blob.sha256)  # a missing blob is not an error
    assert not any_store.exists(blob.sha256)
    with pytest.raises(InvalidInput):
        any_store.get("not-a-digest", tmp_path / "x")


def test_idempotent_put(any_store: ArtifactStore, tmp_path: Path) -> None:
    path = _file(tmp_path / "a.bin", os.urandom(5000))
    first = any_store.put(path)
    second = any_store.put(path)
    assert first == second
    assert [b.sha256 for b in any_store.list_blobs()] == [first.sha256]


# --- S3 specifics ---------------------------------------------------------------------------


def test_idempotent_put_skips_the_upload(s3_store: S3ArtifactStore, tmp_path: Path) -> None:
    path = _file(tmp_path / "a.bin", os.urandom(5000))
    s3_store.put(path)
    uploads = _count_calls(s3_store, "PutObject", "CreateMultipartUpload", "UploadPart", "HeadObject")
    s3_store.put(path)
    assert "HeadObject" in uploads
    assert not {"PutObject", "CreateMultipartUpload", "UploadPart"} & set(uploads)


def test_key_layout_checksum_and_no_leftovers(
    s3_store: S3ArtifactStore, s3_client: Any, tmp_path: Path
) -> None:
    data = os.urandom(10_000)
    blob = s3_store.put(_file(tmp_path / "a.bin", data))
    key = f"{s3_store.prefix}/{blob_key(blob.sha256)}"
    assert blob.uri == f"s3://{BUCKET}/{key}" and key.endswith(f"sha256/{blob.sha256[:2]}/{blob.sha256}")
    listed = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=s3_store.prefix + "/")
    assert [o["Key"] for o in listed["Contents"]] == [key]  # the temp upload object is gone
    head = s3_client.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    # The S3-side SHA256 was requested and is the blob's digest.
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == blob.sha256


def test_checksum_can_be_turned_off(
    s3_root: str, s3_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For S3-compatible endpoints that reject flexible checksums; our own sha256 still guards."""
    monkeypatch.setenv("GOVFLOW_S3_CHECKSUM", "none")
    store = S3ArtifactStore.from_uri(s3_root)
    blob = store.put(_file(tmp_path / "a.bin", b"no checksum"))
    head = s3_client.head_object(
        Bucket=BUCKET, Key=blob.uri.removeprefix(f"s3://{BUCKET}/"), ChecksumMode="ENABLED"
    )
    assert "ChecksumSHA256" not in head
    store.get(blob.sha256, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"no checksum"
    monkeypatch.setenv("GOVFLOW_S3_CHECKSUM", "md4")
    with pytest.raises(InvalidInput, match="GOVFLOW_S3_CHECKSUM"):
        S3ArtifactStore.from_uri(s3_root)


def test_file_changed_during_upload_stores_nothing(
    s3_store: S3ArtifactStore, s3_client: Any, tmp_path: Path
) -> None:
    path = _file(tmp_path / "a.bin", b"original bytes")

    def tamper(**_: Any) -> None:  # runs between the first hash and the upload
        path.write_bytes(b"different bytes")

    blobs_seen: list[int] = []

    def look(**_: Any) -> None:  # right after the bytes land: is anything at a digest key?
        listed = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=f"{s3_store.prefix}/sha256/")
        blobs_seen.append(listed["KeyCount"])

    s3_store.client.meta.events.register("before-call.s3.HeadObject", tamper)
    s3_store.client.meta.events.register("after-call.s3.PutObject", look)
    with pytest.raises(ArtifactStoreError, match="changed while uploading"):
        s3_store.put(path)
    assert blobs_seen == [0]  # not even briefly an object whose bytes differ from its name
    listed = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=s3_store.prefix + "/")
    assert listed["KeyCount"] == 0  # and no temp object left behind


def test_corrupted_object_is_refused(s3_store: S3ArtifactStore, s3_client: Any, tmp_path: Path) -> None:
    blob = s3_store.put(_file(tmp_path / "a.bin", b"the real model"))
    key = f"{s3_store.prefix}/{blob_key(blob.sha256)}"
    s3_client.put_object(Bucket=BUCKET, Key=key, Body=b"the evil model")
    dest = tmp_path / "dl" / "model"
    with pytest.raises(DigestMismatch, match=key):
        s3_store.get(blob.sha256, dest)
    assert list((tmp_path / "dl").iterdir()) == []  # no partial file, nothing at dest


def test_missing_bucket_is_named(s3_env: dict[str, str], tmp_path: Path) -> None:
    store = S3ArtifactStore.from_uri("s3://no-such-bucket-here/p")
    with pytest.raises(ArtifactStoreError, match="no-such-bucket-here"):
        store.put(_file(tmp_path / "a.bin", b"x"))


def test_from_uri_validation(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"s3://{BUCKET}/a/b/")
    assert isinstance(store, S3ArtifactStore) and store.prefix == "a/b" and store.root == f"s3://{BUCKET}/a/b"
    assert (
        S3ArtifactStore.from_uri(f"s3://{BUCKET}").uri_for("a" * 64).startswith(f"s3://{BUCKET}/sha256/aa/")
    )
    with pytest.raises(InvalidInput):
        S3ArtifactStore.from_uri("s3://")
    monkeypatch.setenv("GOVFLOW_S3_MAX_ATTEMPTS", "many")
    with pytest.raises(InvalidInput, match="GOVFLOW_S3_MAX_ATTEMPTS"):
        S3ArtifactStore.from_uri(f"s3://{BUCKET}/p")


def test_sweep_temp_removes_partial_uploads(s3_store: S3ArtifactStore, s3_client: Any) -> None:
    from datetime import UTC, datetime, timedelta

    tmp = f"{s3_store.prefix}/tmp/"
    s3_client.put_object(Bucket=BUCKET, Key=tmp + "crashed", Body=b"partial")
    assert s3_store.sweep_temp(datetime.now(UTC) - timedelta(hours=1)) == 0  # too young
    assert s3_client.list_objects_v2(Bucket=BUCKET, Prefix=tmp)["KeyCount"] == 1
    # (moto reports a fixed 2010 start time for multipart uploads, so only the sweep of all.)
    s3_client.create_multipart_upload(Bucket=BUCKET, Key=tmp + "crashed-mpu")
    assert s3_store.sweep_temp(datetime.now(UTC) + timedelta(minutes=1)) == 2
    assert s3_client.list_objects_v2(Bucket=BUCKET, Prefix=tmp)["KeyCount"] == 0
    uploads = s3_client.list_multipart_uploads(Bucket=BUCKET, Prefix=tmp).get("Uploads", [])
    assert uploads == []


# --- large file: multipart, flat memory -----------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from registry.artifacts import open_store

    def peak():
        # VmHWM, this process's own peak RSS. (ru_maxrss would start at the parent's peak:
        # Linux carries the high-water mark of the forked copy across exec.)
        with open("/proc/self/status") as fh:
            line = next(x for x in fh if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    store = open_store(sys.argv[1])
    work = Path(sys.argv[3])
    warm = work / "warm.bin"
    warm.write_bytes(b"warm-up")  # load botocore's lazy modules before the baseline
    store.get(store.put(warm).sha256, work / "warm.out")
    parts = []
    store.client.meta.events.register("before-call.s3.UploadPart", lambda **kw: parts.append(1))
    base = peak()
    blob = store.put(Path(sys.argv[2]))
    after_put = peak()
    store.get(blob.sha256, work / "big.out")
    print(json.dumps({"sha256": blob.sha256, "size": blob.size, "parts": len(parts),
                      "base": base, "put": after_put, "get": peak()}))
    """
)


def test_large_file_multipart_with_flat_memory(
    s3_root: str, s3_env: dict[str, str], s3_client: Any, tmp_path: Path
) -> None:
    size = 200 * 1024 * 1024
    big = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(big, "wb") as fh:
        for _ in range(size // (8 * 1024 * 1024)):
            chunk = os.urandom(8 * 1024 * 1024)
            digest.update(chunk)
            fh.write(chunk)
    env = {**os.environ, **s3_env, "PYTHONPATH": str(ROOT)}
    try:
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, s3_root, str(big), str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        m = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        big.unlink()
        for obj in s3_client.list_objects_v2(Bucket=BUCKET, Prefix=s3_root.split("/", 3)[3]).get(
            "Contents", []
        ):
            s3_client.delete_object(Bucket=BUCKET, Key=obj["Key"])  # free the server's memory
    assert m["sha256"] == digest.hexdigest() and m["size"] == size
    assert m["parts"] >= 2, "a 200 MB upload must go multipart"
    assert hashlib.sha256((tmp_path / "big.out").read_bytes()).hexdigest() == digest.hexdigest()
    mib = 1024 * 1024
    print(f"peak RSS: base {m['base'] / mib:.0f} MiB, put {m['put'] / mib:.0f}, get {m['get'] / mib:.0f}")
    grew_put, grew_get = (m["put"] - m["base"]) / mib, (m["get"] - m["base"]) / mib
    assert grew_put < 80, f"put grew the peak RSS by {grew_put:.0f} MiB for a 200 MiB file"
    assert grew_get < 80, f"get grew the peak RSS by {grew_get:.0f} MiB for a 200 MiB file"


# --- a dying endpoint ------------------------------------------------------------------------


def test_endpoint_stopped_before_register(
    backend_url: str, dead_s3_endpoint: str, tmp_path: Path, artifact: Path
) -> None:
    reg = Registry(url=backend_url, artifact_root=f"s3://{BUCKET}/dead", policy=Policy())
    try:
        with pytest.raises(ArtifactStoreError) as info:
            reg.register("churn", artifact, actor="alice")
        message = str(info.value)
        assert f"s3://{BUCKET}/dead/sha256/" in message and dead_s3_endpoint in message
        assert reg.models() == [] and reg.audit_log() == []  # no version row, no audit event
        with reg.db.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(versions)).scalar_one() == 0
    finally:
        reg.close()


def test_endpoint_stopped_during_download(dying_s3_proxy: DyingProxy, s3_root: str, tmp_path: Path) -> None:
    store = S3ArtifactStore.from_uri(s3_root)  # talks to the server through the proxy
    assert store.endpoint_url == dying_s3_proxy.url
    blob = store.put(_file(tmp_path / "a.bin", os.urandom(8 * 1024 * 1024)))
    dying_s3_proxy.die_after(1024 * 1024)  # the endpoint goes away 1 MiB into the download
    dest = tmp_path / "dl" / "model"
    with pytest.raises(ArtifactStoreError) as info:
        store.get(blob.sha256, dest)
    assert dying_s3_proxy.dead.is_set()
    assert blob.sha256 in str(info.value) and BUCKET in str(info.value)
    assert list((tmp_path / "dl").iterdir()) == []


# --- registry over S3 -----------------------------------------------------------------------


def _model() -> tuple[Any, np.ndarray]:
    rng = np.random.RandomState(0)
    x = rng.randn(200, 4)
    x[::17, 2] = np.nan
    y = (np.nan_to_num(x[:, 0]) + x[:, 1] > 0).astype(int)
    return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()).fit(x, y), x


def test_roundtrip_local_and_s3_agree(s3_registry: Registry, backend_url: str, tmp_path: Path) -> None:
    model, x = _model()
    path = tmp_path / "model.skops"
    save(model, path)
    local = Registry(url=backend_url, artifact_root=str(tmp_path / "local"), policy=Policy())
    try:
        v_local = local.register("churn-local", path, actor="alice", artifact_format="skops")
        v_s3 = s3_registry.register("churn-s3", path, actor="alice", artifact_format="skops")
        assert v_local.artifact.sha256 == v_s3.artifact.sha256
        assert v_s3.artifact.uri.startswith(f"s3://{BUCKET}/")
        from_local = local.load_model("churn-local/1")
        from_s3 = s3_registry.load_model("churn-s3/1", cache_dir=tmp_path / "cache")
    finally:
        local.close()
    np.testing.assert_array_equal(from_local.predict_proba(x), from_s3.predict_proba(x))
    np.testing.assert_array_equal(from_s3.predict_proba(x), model.predict_proba(x))
    # The cache is re-verified and re-used.
    again = s3_registry.load_model("churn-s3/1", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_register_model_and_load_over_s3(s3_registry: Registry) -> None:
    model, x = _model()
    v = s3_registry.register_model("churn", model, actor="alice", metrics={"auc": 0.9})
    assert v.artifact.format == "skops" and s3_registry.resolve("churn/1").artifact_format == "skops"
    assert s3_registry.artifacts.exists(v.artifact.sha256)
    np.testing.assert_array_equal(s3_registry.load_model("churn/1").predict(x), model.predict(x))


def test_load_refuses_corrupted_object_before_loading(
    s3_env: dict[str, str], s3_root: str, backend_url: str, s3_client: Any, tmp_path: Path
) -> None:
    """Even with both pickle opt-ins, tampered bytes never reach the unpickler."""
    from tests.registry.test_serialization import evil_pickle

    reg = Registry(url=backend_url, artifact_root=s3_root, policy=Policy(allow_pickle=True))
    try:
        v = reg.register_model("churn", {"weights": [1, 2, 3]}, actor="alice", allow_pickle=True)
        marker = tmp_path / "pwned"
        key = v.artifact.uri.removeprefix(f"s3://{BUCKET}/")
        s3_client.put_object(Bucket=BUCKET, Key=key, Body=evil_pickle(marker))
        with pytest.raises(DigestMismatch):
            reg.load_model("churn/1", allow_pickle=True, cache_dir=tmp_path / "cache")
        assert not marker.exists()
        assert [p.name for p in (tmp_path / "cache").iterdir()] == []
        assert "model.pickle_loaded" not in [e.action for e in reg.audit_log()]
    finally:
        reg.close()


# --- the CLI, unchanged, with an s3:// root --------------------------------------------------


def test_cli_register_and_show_with_s3_root(s3_root: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        **os.environ,
        **s3_env,
        "GOVFLOW_ARTIFACT_ROOT": s3_root,
        "GOVFLOW_REGISTRY_URL": f"sqlite:///{tmp_path / 'reg.db'}",
        "GOVFLOW_ACTOR": "alice",
        "PYTHONPATH": str(ROOT),
    }
    model = _file(tmp_path / "model.bin", b"cli-model-" + uuid.uuid4().hex.encode())

    def govflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "govflow", *args], env=env, capture_output=True, text=True, timeout=60
        )

    reg = govflow("register", "churn", "--artifact", str(model), "--metric", "auc=0.91", "--json")
    assert reg.returncode == 0, reg.stderr
    out = json.loads(reg.stdout)
    assert out["artifact_uri"].startswith(s3_root + "/sha256/")
    assert out["artifact_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    show = govflow("show", "churn/1", "--json")
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["artifact"]["uri"] == out["artifact_uri"]
    assert S3ArtifactStore.from_uri(s3_root).exists(out["artifact_sha256"])
