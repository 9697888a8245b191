"""Dataset lineage: content digests, row counts and schema fingerprints."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from registry.artifacts.base import CHUNK
from registry.entities import DatasetRef, DatasetRole
from registry.errors import InvalidInput

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def schema_fingerprint(columns: dict[str, str]) -> str:
    """sha256 of the sorted ``name:dtype`` list, so a schema change shows as a new fingerprint."""
    text = "\n".join(f"{k}:{v}" for k, v in sorted(columns.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_file(path: Path) -> tuple[str, int | None]:
    """(sha256, data rows) of a file; rows are counted for CSV (lines minus the header).

    Refuses anything but a regular file (a FIFO, a device, a directory) and a file that cannot
    be read to the end, with ``InvalidInput(field="dataset")`` naming the path.
    """
    digest = hashlib.sha256()
    newlines = 0
    last = b""
    try:
        # O_NONBLOCK so that opening a FIFO to check its type does not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidInput(f"dataset: {path} is not a regular file", field="dataset")
    with os.fdopen(fd, "rb") as fh:
        try:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                newlines += chunk.count(b"\n")
                last = chunk
        except OSError as exc:
            raise _unreadable(path, exc) from None
    rows = None
    if path.suffix.lower() == ".csv":
        lines = newlines + (1 if last and not last.endswith(b"\n") else 0)
        rows = max(lines - 1, 0)
    return digest.hexdigest(), rows


def _unreadable(path: Path, exc: OSError) -> InvalidInput:
    return InvalidInput(f"dataset: cannot read {path}: {exc.strerror or exc}", field="dataset")


def dataset_ref(role: str, target: str, **extra: object) -> DatasetRef:
    """A dataset reference from a local path (hashed), a sha256 digest, or a URI."""
    try:
        role_value = DatasetRole(role)
    except ValueError:
        allowed = ", ".join(r.value for r in DatasetRole)
        raise InvalidInput(f"dataset role: {role!r} is not one of {allowed}", field="dataset") from None
    if _HEX64.match(target):
        return DatasetRef(role=role_value, uri=target, sha256=target, **extra)  # type: ignore[arg-type]
    path = Path(target).expanduser()
    if "://" not in target:
        try:
            present = path.exists()
        except OSError as exc:  # e.g. a name too long for the file system
            raise _unreadable(path, exc) from None
        if not present:
            raise InvalidInput(f"dataset {role}: {target} is not a readable file", field="dataset")
        digest, rows = hash_file(path)
        extra.setdefault("rows", rows)
        return DatasetRef(role=role_value, uri=path.resolve().as_uri(), sha256=digest, **extra)  # type: ignore[arg-type]
    return DatasetRef(role=role_value, uri=target, **extra)  # type: ignore[arg-type]
