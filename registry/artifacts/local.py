"""Local-folder artifact store: atomic writes (temp file + fsync + rename), verified reads."""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from registry.artifacts.base import ArtifactStore, Blob, blob_key, check_digest
from registry.errors import ArtifactNotFound, ArtifactStoreError, DigestMismatch

COPY_CHUNK = 8 * 1024 * 1024
_BUFFERS = 3  # chunks in flight between the copying and the hashing thread: 24 MiB at most
_FLUSH_EVERY = 0.05  # seconds between background fdatasyncs of a durable copy
_DIGEST_NAME_LEN = 64
# sendfile() between regular files is Linux; elsewhere (or on odd filesystems) copy in user space.
_NO_KERNEL_COPY = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK, errno.EXDEV}

_Item = tuple[memoryview, int] | BaseException | None


def _pread_exact(fd: int, buf: memoryview, offset: int) -> None:
    while buf:
        n = os.preadv(fd, [buf], offset)
        if n == 0:
            raise OSError(errno.EIO, "destination shrank while being copied")
        buf, offset = buf[n:], offset + n


def _copy_chunks(
    src: int, dst: int, kernel: bool, free: queue.Queue[memoryview | None], full: queue.Queue[_Item]
) -> None:
    """The copying thread: copy chunk by chunk, and hand each chunk as it now reads in ``dst``.

    The kernel copies (sendfile) and the chunk is read back from the destination, so what gets
    hashed is what was stored. Without sendfile: read, write, and hand over the buffer written.
    """
    offset = 0
    try:
        while (buf := free.get()) is not None:
            n = 0
            if kernel:
                try:
                    n = os.sendfile(dst, src, offset, COPY_CHUNK)
                except OSError as exc:
                    if offset or exc.errno not in _NO_KERNEL_COPY:
                        raise
                    kernel = False
                else:
                    _pread_exact(dst, buf[:n], offset)
            if not kernel:
                n = os.readv(src, [buf])
                view = buf[:n]
                while view:
                    view = view[os.write(dst, view) :]
            if n == 0:
                break
            full.put((buf, n))
            offset += n
    except BaseException as exc:  # noqa: BLE001 - handed to the hashing thread, which re-raises it
        full.put(exc)
        return
    full.put(None)


def _flush_until(done: threading.Event, fd: int, errors: list[BaseException]) -> None:
    try:
        while not done.wait(_FLUSH_EVERY):
            os.fdatasync(fd)
    except OSError as exc:
        errors.append(exc)


def copy_verified(src: int, dst: int, *, durable: bool = False, kernel: bool = True) -> tuple[str, int]:
    """Copy file descriptor ``src`` into the new, empty file ``dst``; return (sha256, size) of the
    bytes now in ``dst``.

    The digest is that of the destination's bytes, whatever happens to the source meanwhile.
    One thread copies (sendfile: the bytes never pass through Python) and reads each chunk back;
    this thread hashes it meanwhile, so the copy costs about what hashing alone costs.
    ``durable`` flushes to disk during the copy (a background fdatasync) and fsyncs at the end,
    so the disk works while we copy instead of after. ``kernel=False`` forces the user-space copy.
    """
    free: queue.Queue[memoryview | None] = queue.Queue()
    full: queue.Queue[_Item] = queue.Queue()
    for _ in range(_BUFFERS):
        free.put(memoryview(bytearray(COPY_CHUNK)))
    use_kernel = kernel and hasattr(os, "sendfile")
    copier = threading.Thread(target=_copy_chunks, args=(src, dst, use_kernel, free, full), daemon=True)
    done = threading.Event()
    flush_errors: list[BaseException] = []
    flusher = threading.Thread(target=_flush_until, args=(done, dst, flush_errors), daemon=True)
    copier.start()
    if durable:
        flusher.start()
    digest = hashlib.sha256()
    size = 0
    try:
        while (item := full.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            buf, n = item
            digest.update(buf[:n])
            size += n
            free.put(buf)
    finally:
        free.put(None)  # stops the copier if we leave early
        done.set()
        copier.join()
        if durable:
            flusher.join()
    if flush_errors:
        raise flush_errors[0]
    if durable:
        os.fsync(dst)
    return digest.hexdigest(), size


# Files up to this size are read whole: one hash, no copy thread, no fsync when already stored.
SMALL_FILE = 1024 * 1024


class LocalArtifactStore(ArtifactStore):
    """Blobs under ``<root>/sha256/ab/<digest>``; partial uploads under ``<root>/tmp``."""

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
            if path.stat().st_size <= SMALL_FILE:
                return self._put_small(path, tmp_dir)
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
            try:
                # The digest is of the temp file itself, so the bytes stored are the bytes hashed.
                with os.fdopen(fd, "r+b", buffering=0) as dst, open(path, "rb", buffering=0) as src:
                    # Durable before the version row that points at it is written.
                    sha256, size = copy_verified(src.fileno(), dst.fileno(), durable=True)
                final = self._blob_path(sha256)
                try:
                    # A re-used blob gets a fresh time, so GC's grace period covers this register too.
                    os.utime(final)
                    os.unlink(tmp_name)
                except FileNotFoundError:
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

    def _put_small(self, path: Path, tmp_dir: Path) -> Blob:
        """Small files: hash the bytes in memory; an existing blob costs no write and no fsync."""
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        final = self._blob_path(sha256)
        try:
            os.utime(final)  # re-used: refresh its time so GC's grace period covers this register
        except FileNotFoundError:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
            try:
                with os.fdopen(fd, "wb") as dst:
                    dst.write(data)  # the very bytes that were hashed
                    dst.flush()
                    os.fsync(dst.fileno())
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, final)
            finally:
                if os.path.exists(tmp_name):
                    os.unlink(tmp_name)
        return Blob(uri=final.as_uri(), sha256=sha256, size=len(data))

    def get(self, sha256: str, dest: Path) -> Blob:
        src = self._blob_path(sha256)
        dest = Path(dest)
        if not src.is_file():
            raise ArtifactNotFound(f"artifact {sha256} not found in {self.root}", location=str(src))
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".fetch-")
        except OSError as exc:
            raise ArtifactStoreError(
                f"artifact {src}: cannot write to {dest.parent}: {exc.strerror or exc}", location=str(src)
            ) from exc
        try:
            with os.fdopen(fd, "r+b", buffering=0) as out, open(src, "rb", buffering=0) as fh:
                digest, size = copy_verified(fh.fileno(), out.fileno())
            if digest != sha256:
                raise DigestMismatch(
                    f"artifact {src}: bytes hash to {digest}, expected {sha256}",
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

    def stat(self, sha256: str) -> Blob | None:
        p = self._blob_path(sha256)
        try:
            return self._blob(p)
        except FileNotFoundError:
            return None

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
            if len(p.name) != _DIGEST_NAME_LEN or p.parent.name != p.name[:2]:
                continue  # not a blob (a stray file someone left in the tree)
            try:
                yield self._blob(p)
            except FileNotFoundError:
                continue  # deleted while listing

    def sweep_temp(self, older_than: datetime) -> int:
        removed = 0
        tmp_dir = self.path / "tmp"
        if not tmp_dir.is_dir():
            return 0
        cutoff = older_than.timestamp()
        for p in tmp_dir.glob("upload-*"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # finished (renamed) or swept by someone else meanwhile
            except OSError as exc:
                raise ArtifactStoreError(
                    f"artifact store {self.root}: cannot remove {p}: {exc.strerror or exc}",
                    location=str(p),
                ) from exc
        return removed

    @staticmethod
    def _blob(p: Path) -> Blob:
        st = p.stat()
        return Blob(
            uri=p.as_uri(),
            sha256=p.name,
            size=st.st_size,
            modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        )
