"""Artifact bytes: streamed upload (digest checked before storing) and download.

The client verifies the digest of what it downloads; the server streams a local blob as stored,
so a blob altered on disk is caught by the client, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse
from starlette.background import BackgroundTask

from registry import identity
from registry.artifacts.base import Blob, blob_key, check_digest
from registry.errors import ArtifactNotFound, ArtifactStoreError, DigestMismatch, InvalidInput
from registry.service import problem
from registry.service.caller import Call, GuardedRoute, needs
from registry.service.openapi import problems

router = APIRouter(prefix="/api/v1/blobs", tags=["artifacts"], route_class=GuardedRoute)
PRESIGN_SECONDS = 300
_PRESIGNED = {"description": "A presigned S3 URL for the bytes (GOVFLOW_SERVER_PRESIGN=1)."}


def _store_as(caller: identity.Caller, registry: Any, path: Path) -> Blob:
    with identity.acting(caller):
        return registry.artifacts.put(path)


@router.put("/{sha256}", response_model=Blob, status_code=201, responses=problems(409, 413, 502))
async def upload(
    sha256: str, request: Request, c: Call = needs("register", to="upload an artifact")
) -> Response:
    """Stream the body to a temp file, check it hashes to ``sha256``, then store it."""
    caller = c.admitted or await run_in_threadpool(c.admit)  # GuardedRoute admitted it
    check_digest(sha256)
    cap: int = request.app.state.max_upload
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return problem.from_error(_too_large(cap), 413)
    spool = request.app.state.upload_dir
    try:
        fd, name = tempfile.mkstemp(prefix="govflow-upload-", dir=spool)
    except OSError as exc:
        raise ArtifactStoreError(f"upload spool {spool}: {exc.strerror or exc}", location=spool) from None
    path = Path(name)
    try:
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        return problem.from_error(_too_large(cap), 413)
                    digest.update(chunk)
                    fh.write(chunk)
        except OSError as exc:
            raise ArtifactStoreError(f"upload spool {spool}: {exc.strerror or exc}", location=spool) from None
        if digest.hexdigest() != sha256:
            raise DigestMismatch(
                f"sha256: the uploaded bytes hash to {digest.hexdigest()}, not {sha256}", field="sha256"
            )
        blob = await run_in_threadpool(_store_as, caller, c.registry, path)
    finally:
        path.unlink(missing_ok=True)
    return Response(blob.model_dump_json(), status_code=201, media_type="application/json")


def _too_large(cap: int) -> InvalidInput:
    return InvalidInput(f"body: the upload is larger than the server's limit of {cap} bytes", field="body")


@router.head("/{sha256}", responses=problems(404, 502))
def exists(sha256: str, c: Call = needs("read")) -> Response:
    """200 when the blob is stored, 404 when not."""
    found = c.run(lambda: c.registry.artifacts.exists(check_digest(sha256)))
    return Response(status_code=200 if found else 404)


@router.get("/{sha256}", response_class=FileResponse, responses={**problems(404, 502), 307: _PRESIGNED})
def download(sha256: str, request: Request, c: Call = needs("read")) -> Response:
    """The blob's bytes, or a 307 to a presigned S3 URL when GOVFLOW_SERVER_PRESIGN=1."""
    return c.run(_download, c.registry, check_digest(sha256), request.app.state.presign)


def _download(registry: Any, sha256: str, presign: bool) -> Response:
    store = registry.artifacts
    if store.root.startswith("s3://"):
        if not store.exists(sha256):
            raise ArtifactNotFound(f"artifact {sha256} not found in {store.root}", location=store.root)
        if presign:
            key = f"{store.prefix}/{blob_key(sha256)}" if store.prefix else blob_key(sha256)
            url = store.client.generate_presigned_url(
                "get_object", Params={"Bucket": store.bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
            )
            return RedirectResponse(url, status_code=307)
        return _fetched(store, sha256)
    blob = store.stat(sha256)
    if blob is None:
        raise ArtifactNotFound(f"artifact {sha256} not found in {store.root}", location=store.root)
    if not blob.uri.startswith("file://"):
        return _fetched(store, sha256)
    local = Path(url2pathname(urlparse(blob.uri).path))
    return FileResponse(local, media_type="application/octet-stream")


def _fetched(store: Any, sha256: str) -> FileResponse:
    """Fetch (and verify) a remote blob into a temp file, stream it, then remove it."""
    folder = tempfile.mkdtemp(prefix="govflow-download-")
    dest = Path(folder) / sha256
    try:
        store.get(sha256, dest)
    except BaseException:
        os.rmdir(folder)
        raise

    def cleanup() -> None:
        dest.unlink(missing_ok=True)
        os.rmdir(folder)

    return FileResponse(dest, media_type="application/octet-stream", background=BackgroundTask(cleanup))
