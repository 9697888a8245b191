"""Local-folder artifact store: atomic writes (temp file + fsync + rename), verified reads."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from registry.artifacts.base import CHUNK, ArtifactStore, Blob, blob_key, check_digest
from registry.errors import ArtifactNotFound, ArtifactStoreError, DigestMismatch


class LocalArtifactStore(ArtifactStore):
    """Blobs under ``<root>/sha256/ab/<digest>``."""

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root).expanduser().resolve()
        self.root = str(self.path)

    def _blob_path(self, sha256: str) -> Path:
        return self.path / blob_key(check_digest(sha256))

    def uri_for(self, sha256: str) -> str:
        return self._blob_path(sha256).as_uri()

    def put(self, path: Path) -> Blob:
        path = Path(path)
        if not path.is_file():
            raise ArtifactStoreError(f"artifact: {path} is not a readable file", location=str(path))
        tmp_dir = self.path / "tmp"
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            size = 0
            # Hash while copying, so the bytes stored are the bytes hashed.
            fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
            try:
                with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                        size += len(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
                sha256 = digest.hexdigest()
                final = self._blob_path(sha256)
                if final.exists():
                    os.unlink(tmp_name)
                else:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp_name, final)
            except BaseException:
                if os.path.exists(tmp_name):
                    os.unlink(tmp_name)
                raise
        except OSError as exc:
            raise ArtifactStoreError(
                f"artifact store {self.root}: cannot store {path}: {exc.strerror or exc}",
                location=self.root,
            ) from exc
        return Blob(uri=final.as_uri(), sha256=sha256, size=size)

    def get(self, sha256: str, dest: Path) -> Blob:
        src = self._blob_path(sha256)
        dest = Path(dest)
        if not src.is_file():
            raise ArtifactNotFound(f"artifact {sha256} not found in {self.root}", location=str(src))
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".fetch-")
        try:
            digest = hashlib.sha256()
            size = 0
            with open(src, "rb") as fh, os.fdopen(fd, "wb") as out:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            if digest.hexdigest() != sha256:
                raise DigestMismatch(
                    f"artifact {src}: bytes hash to {digest.hexdigest()}, expected {sha256}",
                    location=str(src),
                )
            os.replace(tmp_name, dest)
        except OSError as exc:
            raise ArtifactStoreError(
                f"artifact {src}: cannot read: {exc.strerror or exc}", location=str(src)
            ) from exc
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return Blob(uri=src.as_uri(), sha256=sha256, size=size)

    def exists(self, sha256: str) -> bool:
        return self._blob_path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        try:
            self._blob_path(sha256).unlink(missing_ok=True)
        except OSError as exc:
            raise ArtifactStoreError(
                f"artifact store {self.root}: cannot delete {sha256}: {exc}", location=self.root
            ) from exc

    def list_blobs(self) -> Iterator[Blob]:
        base = self.path / "sha256"
        if not base.is_dir():
            return
        for p in sorted(base.glob("*/*")):
            st = p.stat()
            yield Blob(
                uri=p.as_uri(),
                sha256=p.name,
                size=st.st_size,
                modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
            )
