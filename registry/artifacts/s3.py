"""S3 artifact store (AWS S3, MinIO, Ceph, any S3-compatible endpoint) over boto3.

Blobs live at ``<prefix>/sha256/ab/<digest>``; partial uploads at ``<prefix>/tmp/<uuid>``. The
endpoint comes from ``GOVFLOW_S3_ENDPOINT_URL`` and credentials from boto3's standard chain
(environment, shared files, instance roles). Every botocore/boto3 failure surfaces as an
``ArtifactStoreError`` (``ArtifactNotFound``, ``DigestMismatch``) naming the bucket and key.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import boto3
import urllib3.exceptions
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError

from registry.artifacts.base import CHUNK, ArtifactStore, Blob, blob_key, check_digest, sha256_file
from registry.config import env
from registry.errors import (
    ArtifactNotFound,
    ArtifactStoreError,
    DigestMismatch,
    GovflowError,
    InvalidInput,
    map_exceptions,
)

MiB = 1024 * 1024
# An S3 call gives up after MAX_ATTEMPTS x READ_TIMEOUT (~15 s) on an endpoint that never answers;
# the read timeout bounds each wait for bytes, not a whole transfer.
DEFAULT_MAX_ATTEMPTS = 3  # in all, the first included: two retries
DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_READ_TIMEOUT = 5.0
# CopyObject copies up to 5 GiB in one request; beyond that the managed (multipart) copy is needed.
COPY_OBJECT_LIMIT = 5 * 1024 * MiB
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_CHECKSUMS = {"SHA256", "SHA1", "CRC32", "CRC32C", "CRC64NVME", "NONE", ""}
# The failure families of boto3, botocore, s3transfer and the sockets under them. Anything else
# is a bug and propagates unchanged.
_S3_FAILURES: tuple[type[BaseException], ...] = (
    ClientError,
    BotoCoreError,
    Boto3Error,
    RetriesExceededError,
    urllib3.exceptions.HTTPError,
    OSError,
)


def _env_number(name: str, default: float, cast: Callable[[str], float]) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise InvalidInput(f"{name}: {raw!r} is not a number", field=name) from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"{name}: {raw!r} must be a positive finite number", field=name)
    return value


def _transfer_config() -> TransferConfig:
    """Parts of 8 MiB, at most 4 read ahead: upload memory stays ~tens of MiB at any file size."""
    config = TransferConfig(
        multipart_threshold=16 * MiB,
        multipart_chunksize=8 * MiB,
        max_concurrency=4,
        use_threads=True,
        # The classic transfer manager is the one whose in-order reads and memory bound we rely on.
        preferred_transfer_client="classic",
    )
    # s3transfer's bound on parts held in memory for a stream upload (boto3 does not expose it).
    config.max_in_memory_upload_chunks = 4
    return config


class _HashingReader:
    """A read-only, non-seekable view of a file that hashes every byte handed out.

    Being non-seekable makes s3transfer read it strictly in order from one thread (the
    parts are then sent concurrently from memory), so the digest is that of the bytes sent.
    """

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._digest.update(data)
        return data

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class S3ArtifactStore(ArtifactStore):
    """Content-addressed blobs in one bucket under one prefix.

    Refuses (with ``ArtifactStoreError``): an unreachable or unresponsive endpoint after
    ``max_attempts`` tries of at most ``connect_timeout`` + ``read_timeout`` each, missing credentials, a missing bucket, denied access, and a file that changed while it was
    uploaded. A read whose bytes do not hash to the digest raises ``DigestMismatch`` and leaves
    nothing at the destination.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        checksum_algorithm: str | None = "SHA256",
        transfer_config: TransferConfig | None = None,
    ) -> None:
        if len(bucket) < 3:
            raise InvalidInput(f"artifact root: bucket {bucket!r} is too short", field="artifact_root")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url
        self.checksum_algorithm = checksum_algorithm
        config = Config(
            # total_max_attempts counts the first try; botocore's max_attempts would count retries only.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # S3-compatible servers behind an IP or a plain host name need path-style URLs.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # We hash every download ourselves; botocore re-hashing the stream would double the CPU.
            response_checksum_validation="when_required",
            # Without a checksum (an endpoint that rejects them), botocore must not add its CRC32.
            request_checksum_calculation="when_supported" if checksum_algorithm else "when_required",
        )
        self.transfer = transfer_config or _transfer_config()
        with self._errors("connect to", ""):
            self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)

    @classmethod
    def from_uri(cls, uri: str) -> S3ArtifactStore:
        """Open ``s3://bucket[/prefix]``; the environment sets the endpoint, retries and timeouts.

        ``GOVFLOW_S3_ENDPOINT_URL``, ``GOVFLOW_S3_MAX_ATTEMPTS`` (3 tries in all),
        ``GOVFLOW_S3_CONNECT_TIMEOUT`` (3 s), ``GOVFLOW_S3_READ_TIMEOUT`` (5 s, the longest wait for
        bytes), ``GOVFLOW_S3_CHECKSUM`` (``SHA256``; ``none`` for endpoints that reject flexible
        checksums). Refuses a variable that is not a positive number, naming it.
        """
        if not uri.startswith("s3://") or not uri[len("s3://") :].strip("/"):
            raise InvalidInput(f"artifact root: {uri!r} is not s3://bucket/prefix", field="artifact_root")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        checksum = os.environ.get("GOVFLOW_S3_CHECKSUM", "SHA256").strip().upper()
        if checksum not in _CHECKSUMS:
            raise InvalidInput(
                f"GOVFLOW_S3_CHECKSUM: {checksum!r} is not one of {', '.join(sorted(_CHECKSUMS))}",
                field="GOVFLOW_S3_CHECKSUM",
            )
        return cls(
            bucket,
            prefix,
            endpoint_url=env("GOVFLOW_S3_ENDPOINT_URL"),
            max_attempts=int(_env_number("GOVFLOW_S3_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, int)),
            connect_timeout=_env_number("GOVFLOW_S3_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT, float),
            read_timeout=_env_number("GOVFLOW_S3_READ_TIMEOUT", DEFAULT_READ_TIMEOUT, float),
            checksum_algorithm=None if checksum in ("", "NONE") else checksum,
        )

    # --- keys and errors -------------------------------------------------------------------

    def _key(self, sha256: str) -> str:
        key = blob_key(check_digest(sha256))
        return f"{self.prefix}/{key}" if self.prefix else key

    def _sub(self, folder: str) -> str:
        return f"{self.prefix}/{folder}/" if self.prefix else f"{folder}/"

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def uri_for(self, sha256: str) -> str:
        return self._where(self._key(sha256))

    def _errors(self, action: str, key: str) -> AbstractContextManager[None]:
        """Translate boto failures into govflow errors that name the bucket and key."""
        where = self._where(key)

        def from_client(exc: BaseException) -> GovflowError:
            assert isinstance(exc, ClientError)
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code in _NOT_FOUND:
                return ArtifactNotFound(f"{where}: no such object", location=where)
            if code == "NoSuchBucket":
                return ArtifactStoreError(f"{where}: bucket {self.bucket} does not exist", location=where)
            return ArtifactStoreError(
                f"{where}: cannot {action}: {code or 'error'}: {err.get('Message') or exc}", location=where
            )

        def other(exc: BaseException) -> GovflowError:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            endpoint = f" (endpoint {self.endpoint_url})" if self.endpoint_url else ""
            return ArtifactStoreError(f"{where}: cannot {action}{endpoint}: {detail}", location=where)

        mapping: dict[type[BaseException], Callable[[BaseException], GovflowError]] = {
            ClientError: from_client,
            **{family: other for family in _S3_FAILURES if family is not ClientError},
        }
        return map_exceptions(mapping)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            with self._errors("look up", key):
                return self.client.head_object(Bucket=self.bucket, Key=key)
        except ArtifactNotFound:
            return None

    def _checksum(self) -> dict[str, str]:
        return {"ChecksumAlgorithm": self.checksum_algorithm} if self.checksum_algorithm else {}

    def _server_copy(self, src: str, dst: str, size: int, *, touch: bool = False) -> dict[str, Any]:
        source = {"Bucket": self.bucket, "Key": src}
        # S3 refuses a copy onto itself unless something changes; replacing the metadata counts.
        extra: dict[str, Any] = {**self._checksum(), **({"MetadataDirective": "REPLACE"} if touch else {})}
        with self._errors("copy to", dst):
            if size <= COPY_OBJECT_LIMIT:
                return self.client.copy_object(Bucket=self.bucket, Key=dst, CopySource=source, **extra)
            self.client.copy(source, self.bucket, dst, ExtraArgs=extra, Config=self.transfer)
            return {}

    # --- the interface ---------------------------------------------------------------------

    def put(self, path: Path) -> Blob:
        """Upload the file under its sha256; skip the upload when that object already exists.

        Why hash, upload to a temp key, verify, then copy: the key is the digest, so the digest
        must be known before (the HEAD that makes put idempotent), but the file may change
        between that hash and the upload. Uploading straight to the digest key could leave, even
        briefly, an object whose bytes differ from its name. So the upload goes to a temp key
        while a second hash runs over exactly the bytes sent (the stream is read in order); only
        when it equals the first does a server-side copy (atomic) create the digest key.
        """
        path = Path(path)
        if not path.is_file():
            raise ArtifactStoreError(f"artifact: {path} is not a readable file", location=str(path))
        try:
            sha256, size = sha256_file(path)
        except OSError as exc:
            raise ArtifactStoreError(f"artifact {path}: cannot read: {exc}", location=str(path)) from exc
        key = self._key(sha256)
        blob = Blob(uri=self._where(key), sha256=sha256, size=size)
        if self._head(key) is not None:
            try:
                # Refresh its time so GC's grace period protects the version about to reference it.
                self._server_copy(key, key, size, touch=True)
                return blob
            except ArtifactNotFound:
                pass  # collected between the HEAD and the copy: upload it afresh
        tmp_key = f"{self._sub('tmp')}{uuid.uuid4().hex}"
        # A failed upload leaves no temp object: s3transfer aborts its multipart upload itself.
        with open(path, "rb") as fh, self._errors("upload", tmp_key):
            reader = _HashingReader(fh)
            self.client.upload_fileobj(
                reader, self.bucket, tmp_key, ExtraArgs=self._checksum(), Config=self.transfer
            )
        try:
            if reader.hexdigest() != sha256:
                raise ArtifactStoreError(
                    f"artifact {path}: changed while uploading (sha256 {sha256} before, "
                    f"{reader.hexdigest()} sent); nothing stored",
                    location=self._where(tmp_key),
                )
            result = self._server_copy(tmp_key, key, size)
            self._check_server_checksum(result, sha256, key)
        finally:
            self._discard(tmp_key)
        return blob

    def _check_server_checksum(self, result: dict[str, Any], sha256: str, key: str) -> None:
        """Compare the endpoint's own SHA256 of the copy, when it reports one."""
        reported = result.get("CopyObjectResult", {}).get("ChecksumSHA256")
        if not reported or "-" in reported:
            return  # endpoint without flexible checksums, or a composite (per-part) checksum
        if base64.b64decode(reported).hex() != sha256:
            self._discard(key)
            raise DigestMismatch(
                f"{self._where(key)}: the endpoint's SHA256 of the stored copy is not {sha256}; removed",
                location=self._where(key),
            )

    def _discard(self, key: str) -> None:
        try:
            with self._errors("delete", key):
                self.client.delete_object(Bucket=self.bucket, Key=key)
        except ArtifactStoreError:
            pass  # best effort: a leftover temp object is swept by GC (sweep_temp)

    def get(self, sha256: str, dest: Path) -> Blob:
        """Stream the blob to ``dest`` through sha256; only verified bytes reach ``dest``."""
        key = self._key(sha256)
        dest = Path(dest)
        where = self._where(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".fetch-")
        except OSError as exc:
            raise ArtifactStoreError(
                f"{where}: cannot write to {dest.parent}: {exc.strerror or exc}", location=where
            ) from exc
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out, self._errors("download", key):
                resp = self.client.get_object(Bucket=self.bucket, Key=key)
                with closing(resp["Body"]) as body:
                    for chunk in body.iter_chunks(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            if digest.hexdigest() != sha256:
                raise DigestMismatch(
                    f"{where}: bytes hash to {digest.hexdigest()}, expected {sha256}", location=where
                )
            os.replace(tmp_name, dest)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return Blob(uri=where, sha256=sha256, size=size)

    def exists(self, sha256: str) -> bool:
        return self._head(self._key(sha256)) is not None

    def stat(self, sha256: str) -> Blob | None:
        key = self._key(sha256)
        head = self._head(key)
        if head is None:
            return None
        return Blob(
            uri=self._where(key), sha256=sha256, size=head["ContentLength"], modified=head["LastModified"]
        )

    def delete(self, sha256: str) -> None:
        key = self._key(sha256)
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list_blobs(self) -> Iterator[Blob]:
        prefix = self._sub("sha256")
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    digest = obj["Key"].rsplit("/", 1)[-1]
                    try:
                        if self._key(digest) != obj["Key"]:
                            continue
                    except InvalidInput:
                        continue  # not a blob key (a stray object under the prefix)
                    yield Blob(
                        uri=self._where(obj["Key"]),
                        sha256=digest,
                        size=obj["Size"],
                        modified=obj["LastModified"],
                    )

    def sweep_temp(self, older_than: datetime) -> int:
        """Delete temp objects and abort multipart uploads started before ``older_than``."""
        prefix = self._sub("tmp")
        removed = 0
        with self._errors("sweep", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    if obj["LastModified"] < older_than:
                        self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                        removed += 1
            uploads = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in uploads:
                for up in page.get("Uploads", []):
                    if up["Initiated"] < older_than:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        removed += 1
        return removed
