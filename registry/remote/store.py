"""The artifact store seen through the registry server: uploads and digest-verified downloads."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from registry.artifacts.base import CHUNK, ArtifactStore, Blob, check_digest, sha256_file
from registry.errors import ArtifactStoreError, DigestMismatch, Refused
from registry.remote.transport import Transport


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


class RemoteArtifactStore(ArtifactStore):
    """Blobs on the server, keyed by sha256. ``get`` verifies the digest on this side."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.root = f"{transport.url}/api/v1/blobs"

    def uri_for(self, sha256: str) -> str:
        return f"{self.root}/{check_digest(sha256)}"

    def put(self, path: Path) -> Blob:
        """Stream the file to the server, which refuses it unless it hashes to the digest sent."""
        path = Path(path)
        if not path.is_file():
            raise ArtifactStoreError(f"artifact: {path} is not a readable file", location=str(path))
        try:
            sha256, size = sha256_file(path)
        except OSError as exc:
            raise ArtifactStoreError(
                f"artifact: cannot read {path}: {exc.strerror or exc}", location=str(path)
            ) from None
        # Small files go in one piece; larger ones stream. The length is declared either way, so
        # the server refuses an oversized upload before reading it.
        body = path.read_bytes() if size <= CHUNK else _chunks(path)
        response = self.transport.call(
            "PUT", f"/api/v1/blobs/{sha256}", content=body, headers={"Content-Length": str(size)}
        )
        return Blob.model_validate_json(response.content)

    def get(self, sha256: str, dest: Path) -> Blob:
        """Download to ``dest``; on a digest mismatch nothing is left at ``dest`` (DigestMismatch)."""
        check_digest(sha256)
        dest = Path(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".fetch-")
        except OSError as exc:
            raise ArtifactStoreError(
                f"artifact {sha256}: cannot write to {dest.parent}: {exc.strerror or exc}", location=str(dest)
            ) from None
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size = self._download(sha256, out)
            if digest != sha256:
                raise DigestMismatch(
                    f"artifact {self.uri_for(sha256)}: bytes hash to {digest}, expected {sha256}",
                    location=self.uri_for(sha256),
                )
            os.replace(tmp_name, dest)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return Blob(uri=self.uri_for(sha256), sha256=sha256, size=size)

    def _download(self, sha256: str, out: object) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with self.transport.stream(f"/api/v1/blobs/{sha256}") as response:
            if response.status_code == 307:  # a presigned URL: fetched without our token
                location = response.headers["location"]
                with self.transport.connection(), httpx.stream("GET", location, timeout=60.0) as direct:
                    if direct.status_code != 200:
                        raise ArtifactStoreError(
                            f"artifact {sha256}: presigned download answered HTTP {direct.status_code}",
                            location=location.split("?")[0],
                        )
                    for chunk in direct.iter_bytes(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)  # type: ignore[attr-defined]
                        size += len(chunk)
                return digest.hexdigest(), size
            for chunk in response.iter_bytes(CHUNK):
                digest.update(chunk)
                out.write(chunk)  # type: ignore[attr-defined]
                size += len(chunk)
        return digest.hexdigest(), size

    def exists(self, sha256: str) -> bool:
        response = self.transport.call("HEAD", f"/api/v1/blobs/{check_digest(sha256)}", ok=(404,))
        return response.status_code == 200

    def delete(self, sha256: str) -> None:
        raise Refused("artifacts are deleted only on the server (govflow gc there)")

    def list_blobs(self) -> Iterator[Blob]:
        raise Refused("blobs are listed only on the server (govflow gc there)")
