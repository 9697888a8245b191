"""Garbage collection: orphans go, referenced and young blobs stay, on local and S3 stores."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry import Policy, Registry
from registry.errors import InvalidInput
from registry.gc import collect_garbage, parse_duration

LATER = timedelta(hours=2)  # "now" for GC runs that must see today's blobs as old


@pytest.fixture(params=["local", "s3"])
def gc_registry(request: pytest.FixtureRequest, backend_url: str, tmp_path: Path) -> Iterator[Registry]:
    """A registry on SQLite/PostgreSQL with a local or an S3 artifact store."""
    if request.param == "s3":
        root = request.getfixturevalue("s3_root")
    else:
        root = str(tmp_path / "artifacts")
    reg = Registry(url=backend_url, artifact_root=root, policy=Policy())
    try:
        yield reg
    finally:
        reg.close()


def _file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(name.encode() + os.urandom(64))
    return path


def test_gc_keeps_referenced_and_removes_orphans(gc_registry: Registry, tmp_path: Path) -> None:
    reg = gc_registry
    v1 = reg.register("churn", _file(tmp_path, "v1"), actor="alice")
    v2 = reg.register("churn", _file(tmp_path, "v2"), actor="alice")
    # What a crash between upload and commit leaves: a blob no version row points at.
    orphan = reg.artifacts.put(_file(tmp_path, "orphan"))
    referenced = {v1.artifact.sha256, v2.artifact.sha256}

    # Within the grace period the orphan is kept: it may be an upload in flight.
    young = collect_garbage(reg)
    assert (young.scanned, young.referenced, young.young, young.deleted) == (3, 2, 1, [])
    assert reg.artifacts.exists(orphan.sha256)

    events = len(reg.audit_log())
    dry = collect_garbage(reg, dry_run=True, now=datetime.now(UTC) + LATER)
    assert [b.sha256 for b in dry.orphans] == [orphan.sha256] and dry.deleted == []
    assert reg.artifacts.exists(orphan.sha256)
    assert len(reg.audit_log()) == events  # a dry run writes nothing

    done = collect_garbage(reg, actor="ops", now=datetime.now(UTC) + LATER)
    assert done.deleted == [orphan.sha256] and done.deleted_bytes == orphan.size
    assert not reg.artifacts.exists(orphan.sha256)
    assert {b.sha256 for b in reg.artifacts.list_blobs()} == referenced
    for digest in referenced:  # still there and intact
        reg.artifacts.get(digest, tmp_path / "check" / digest)

    event = reg.audit_log()[-1]
    assert event.action == "artifacts.gc" and event.actor == "ops"
    assert event.payload["deleted"] == [orphan.sha256] and event.payload["deleted_count"] == 1
    assert event.payload["complete"] is True and reg.verify_audit().ok

    again = collect_garbage(reg, now=datetime.now(UTC) + LATER)
    assert again.deleted == [] and again.scanned == 2


def test_gc_never_deletes_a_blob_referenced_during_the_listing(gc_registry: Registry, tmp_path: Path) -> None:
    reg = gc_registry
    path = _file(tmp_path, "racing")
    reg.artifacts.put(path)
    registered: list[int] = []

    def commit_while_listing(_: int) -> None:
        if not registered:  # a register re-using the orphan commits mid-listing
            registered.append(reg.register("churn", path, actor="alice").version)

    report = collect_garbage(reg, now=datetime.now(UTC) + LATER, progress=commit_while_listing)
    assert registered == [1] and report.deleted == []
    assert reg.artifacts.exists(reg.resolve("churn/1").artifact_sha256)


def test_gc_rechecks_references_right_before_deleting(
    gc_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = gc_registry
    path = _file(tmp_path, "racing")
    reg.artifacts.put(path)
    store = reg.artifacts
    real_stat = store.stat
    registered: list[int] = []

    def stat_then_commit(sha256: str):  # type: ignore[no-untyped-def]
        found = real_stat(sha256)  # GC has decided on this candidate; now a register commits
        registered.append(reg.register("churn", path, actor="alice").version)
        return found

    monkeypatch.setattr(store, "stat", stat_then_commit)
    report = collect_garbage(reg, now=datetime.now(UTC) + LATER)
    assert registered == [1] and report.deleted == []
    assert reg.artifacts.exists(reg.resolve("churn/1").artifact_sha256)


def test_reused_old_orphan_is_protected_by_its_refreshed_time(registry: Registry, tmp_path: Path) -> None:
    """A register that re-uses an old orphan blob refreshes its time, so GC waits for the commit."""
    path = _file(tmp_path, "old")
    blob = registry.artifacts.put(path)
    blob_path = Path(blob.uri.removeprefix("file://"))
    two_hours_ago = time.time() - 7200
    os.utime(blob_path, (two_hours_ago, two_hours_ago))
    assert [b.sha256 for b in collect_garbage(registry, dry_run=True).orphans] == [blob.sha256]

    registry.artifacts.put(path)  # the upload half of a register; its commit has not happened yet
    report = collect_garbage(registry)
    assert report.deleted == [] and report.young == 1 and blob_path.exists()


def test_s3_reput_refreshes_the_blob_time(s3_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = _file(tmp_path, "blob")
    blob = s3_store.put(path)
    first = s3_store.stat(blob.sha256).modified
    deadline = time.monotonic() + 5
    while True:  # S3 times have one-second resolution: re-put until a new second shows
        s3_store.put(path)
        now = s3_store.stat(blob.sha256).modified
        if now > first or time.monotonic() > deadline:
            break
    assert now > first


def test_gc_sweeps_old_partial_uploads(registry: Registry, tmp_path: Path) -> None:
    tmp_dir = Path(registry.artifacts.root) / "tmp"
    tmp_dir.mkdir(parents=True)
    stale = tmp_dir / "upload-crashed"
    stale.write_bytes(b"partial")
    report = collect_garbage(registry)
    assert report.temp_removed == 0 and stale.exists()
    report = collect_garbage(registry, now=datetime.now(UTC) + LATER)
    assert report.temp_removed == 1 and not stale.exists()


def test_parse_duration() -> None:
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("90s") == parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("0") == timedelta(0)
    for bad in ("", "1x", "-1h", "h", "nan"):
        with pytest.raises(InvalidInput):
            parse_duration(bad)


def test_cli_gc(backend_url: str, tmp_path: Path) -> None:
    from govflow.cli import app
    from govflow.cli import artifacts as _  # noqa: F401  (attaches the artifacts commands)

    root = str(tmp_path / "artifacts")
    reg = Registry(url=backend_url, artifact_root=root, policy=Policy())
    try:
        kept = reg.register("churn", _file(tmp_path, "kept"), actor="alice")
        orphan = reg.artifacts.put(_file(tmp_path, "orphan"))
    finally:
        reg.close()
    env = {"GOVFLOW_REGISTRY_URL": backend_url, "GOVFLOW_ARTIFACT_ROOT": root, "GOVFLOW_ACTOR": "ops"}
    runner = CliRunner()

    young = runner.invoke(app, ["artifacts", "gc", "--dry-run", "--json"], env=env)
    assert young.exit_code == 0, young.output
    assert json.loads(young.stdout)["orphans"] == [] and json.loads(young.stdout)["young"] == 1

    dry = runner.invoke(app, ["artifacts", "gc", "--dry-run", "--older-than", "0s", "--json"], env=env)
    assert [b["sha256"] for b in json.loads(dry.stdout)["orphans"]] == [orphan.sha256]

    real = runner.invoke(app, ["artifacts", "gc", "--older-than", "0s"], env=env)
    assert real.exit_code == 0, real.output
    assert f"deleted {orphan.sha256}" in real.stdout and "deleted 1 (" in real.stdout

    reg = Registry(url=backend_url, artifact_root=root, policy=Policy())
    try:
        assert [b.sha256 for b in reg.artifacts.list_blobs()] == [kept.artifact.sha256]
        assert reg.audit_log()[-1].action == "artifacts.gc" and reg.audit_log()[-1].actor == "ops"
    finally:
        reg.close()
