"""The artifact store interface: content-addressed blobs keyed by sha256."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from registry.errors import InvalidInput

CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Blob(BaseModel):
    """A stored blob: where it lives, its digest and its size."""

    uri: str = Field(description="Location of the blob, e.g. file:///… or s3://bucket/key.")
    sha256: str = Field(description="Hex sha256 of the blob's bytes.")
    size: int = Field(description="Size in bytes.")
    modified: datetime | None = Field(default=None, description="Last write time, UTC.")


def check_digest(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex characters; refuse anything else."""
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise InvalidInput(f"sha256: {sha256!r} is not 64 lowercase hex characters", field="sha256")
    return sha256


def blob_key(sha256: str) -> str:
    """Relative key of a blob: ``sha256/ab/abcdef…``."""
    return f"sha256/{sha256[:2]}/{sha256}"


def sha256_file(path: Path) -> tuple[str, int]:
    """Stream a file through sha256; return (hex digest, size)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class ArtifactStore(ABC):
    """Content-addressed blob storage. Every read verifies the digest."""

    root: str

    @abstractmethod
    def put(self, path: Path) -> Blob:
        """Store the file at ``path`` under its sha256; a blob already present is not rewritten."""

    @abstractmethod
    def get(self, sha256: str, dest: Path) -> Blob:
        """Copy the blob to ``dest``, verifying its digest; on mismatch ``dest`` is not created
        and ``DigestMismatch`` is raised."""

    @abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether a blob with this digest is stored."""

    @abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove the blob; a missing blob is not an error."""

    @abstractmethod
    def list_blobs(self) -> Iterator[Blob]:
        """Every blob in the store, with its modification time."""

    @abstractmethod
    def uri_for(self, sha256: str) -> str:
        """The URI a version records for this blob."""

    def stat(self, sha256: str) -> Blob | None:
        """The stored blob with its current modification time, or None when absent.

        Garbage collection asks again right before a delete, because a put that re-uses an
        existing blob refreshes its time. Stores override this with a single lookup.
        """
        check_digest(sha256)
        return next((b for b in self.list_blobs() if b.sha256 == sha256), None)

    def sweep_temp(self, older_than: datetime) -> int:
        """Remove partial uploads (temp files, temp objects) last written before ``older_than``.

        They are what a crash in the middle of ``put`` leaves behind; return how many went.
        """
        return 0
