"""The local-folder artifact store: atomic, verified, and a copy that hashes what it writes."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.artifacts import LocalArtifactStore
from registry.artifacts.base import blob_key
from registry.artifacts.local import COPY_CHUNK, copy_verified
from registry.errors import ArtifactNotFound, ArtifactStoreError, DigestMismatch


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "store")


@pytest.mark.parametrize("kernel", [True, False], ids=["sendfile", "user-space"])
@pytest.mark.parametrize("size", [0, 1, COPY_CHUNK - 1, COPY_CHUNK, COPY_CHUNK + 1, 3 * COPY_CHUNK + 5])
def test_copy_verified_copies_and_hashes_exactly(tmp_path: Path, size: int, kernel: bool) -> None:
    data = os.urandom(size)
    (tmp_path / "src").write_bytes(data)
    with open(tmp_path / "src", "rb", buffering=0) as src, open(tmp_path / "dst", "w+b", buffering=0) as dst:
        digest, n = copy_verified(src.fileno(), dst.fileno(), durable=size % 2 == 0, kernel=kernel)
    assert (digest, n) == (hashlib.sha256(data).hexdigest(), size)
    assert (tmp_path / "dst").read_bytes() == data


def test_copy_verified_hashes_the_destination(tmp_path: Path) -> None:
    """The digest describes the bytes stored: a copy error surfaces instead of a wrong digest."""
    (tmp_path / "src").write_bytes(b"x" * 100)
    (tmp_path / "dst").touch()
    with open(tmp_path / "src", "rb", buffering=0) as src, open(tmp_path / "dst", "rb", buffering=0) as dst:
        with pytest.raises(OSError):  # a read-only destination cannot be written
            copy_verified(src.fileno(), dst.fileno())


def test_blob_layout_and_roundtrip(store: LocalArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(COPY_CHUNK + 123)
    src = tmp_path / "m.bin"
    src.write_bytes(data)
    blob = store.put(src)
    assert (store.path / blob_key(blob.sha256)).read_bytes() == data
    assert list((store.path / "tmp").iterdir()) == []  # no temp file left behind
    store.get(blob.sha256, tmp_path / "out" / "m.bin")
    assert (tmp_path / "out" / "m.bin").read_bytes() == data


def test_corrupted_blob_is_refused_and_dest_untouched(store: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"the real model")
    blob = store.put(src)
    (store.path / blob_key(blob.sha256)).write_bytes(b"the evil model")
    dest = tmp_path / "out" / "m.bin"
    with pytest.raises(DigestMismatch, match=blob.sha256):
        store.get(blob.sha256, dest)
    assert list((tmp_path / "out").iterdir()) == []


def test_put_refuses_a_missing_file_and_get_a_missing_blob(store: LocalArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ArtifactStoreError, match="not a readable file"):
        store.put(tmp_path / "nope")
    with pytest.raises(ArtifactNotFound):
        store.get("a" * 64, tmp_path / "x")


def test_reput_refreshes_the_time(store: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"model")
    blob = store.put(src)
    path = store.path / blob_key(blob.sha256)
    old = time.time() - 7200
    os.utime(path, (old, old))
    store.put(src)
    st = store.stat(blob.sha256)
    assert st is not None and st.modified is not None
    assert st.modified > datetime.now(UTC) - timedelta(minutes=5)


def test_list_skips_stray_files_and_sweep_removes_stale_temp(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"model")
    blob = store.put(src)
    (store.path / "sha256" / "zz").mkdir()
    (store.path / "sha256" / "zz" / "notes.txt").write_text("not a blob")
    assert [b.sha256 for b in store.list_blobs()] == [blob.sha256]
    stale = store.path / "tmp" / "upload-crashed"
    stale.write_bytes(b"partial")
    assert store.sweep_temp(datetime.now(UTC) - timedelta(hours=1)) == 0 and stale.exists()
    assert store.sweep_temp(datetime.now(UTC) + timedelta(minutes=1)) == 1 and not stale.exists()
