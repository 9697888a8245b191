"""An S3 artifact store behind the server: presigned downloads, verified on the client either way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry import errors
from registry.artifacts.base import blob_key
from tests.fixtures.backends import create_pg_database, drop_pg_database_later
from tests.fixtures.s3 import BUCKET, raw_client


@pytest.fixture
def s3_server_harness(
    server_harness: Any, pg_server: str, s3_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Any, str]]:
    url = create_pg_database(pg_server)
    prefix = f"srv-{uuid.uuid4().hex[:8]}"
    try:
        server_harness.open(
            url,
            tmp_path,
            server=True,
            artifact_root=f"s3://{BUCKET}/{prefix}",
        )
        yield server_harness, prefix
    finally:
        server_harness.app.state.presign = False
        server_harness.shut()
        drop_pg_database_later(pg_server, url)


@pytest.mark.parametrize("presign", [True, False])
def test_download_from_s3_is_verified_on_the_client(
    s3_server_harness: tuple[Any, str], s3_env: dict[str, str], tmp_path: Path, presign: bool
) -> None:
    h, prefix = s3_server_harness
    h.app.state.presign = presign
    model = tmp_path / "model.bin"
    model.write_bytes(b"s3 model bytes " + uuid.uuid4().bytes)
    pipe = h.client(h.token("pipeline", name="sam"))
    mv = pipe.register("churn", model)
    sha = mv.artifact.sha256
    r = httpx.get(f"{h.url}/api/v1/blobs/{sha}", headers={"Authorization": f"Bearer {h.admin_token}"})
    if presign:
        assert r.status_code == 307 and blob_key(sha) in r.headers["location"]
    else:
        assert r.status_code == 200 and r.content == model.read_bytes()
    out = tmp_path / "out.bin"
    pipe.artifacts.get(sha, out)
    assert out.read_bytes() == model.read_bytes()

    raw_client(s3_env["GOVFLOW_S3_ENDPOINT_URL"]).put_object(
        Bucket=BUCKET, Key=f"{prefix}/{blob_key(sha)}", Body=b"swapped in the bucket"
    )
    tampered = tmp_path / "tampered.bin"
    with pytest.raises(errors.DigestMismatch):
        pipe.artifacts.get(sha, tampered)
    assert not tampered.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fetch-")] == []
