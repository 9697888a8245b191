"""Where checkpoints live: a local file (written atomically) or an S3 object."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from registry.checkpoint.note import MAX_NOTE
from registry.errors import ArtifactStoreError, IntegrityError, InvalidInput


def write_checkpoint(text: str, dest: str | Path) -> str:
    """Write to a local path (temp file, then rename) or to ``s3://bucket/key``; return where."""
    dest = str(dest)
    if dest.startswith("s3://"):
        bucket, key = _s3_parts(dest, "out")
        with _s3_errors("write", dest):
            _s3_client(bucket).put_object(
                Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType="text/plain; charset=utf-8"
            )
        return dest
    path = Path(dest)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise InvalidInput(f"out: cannot write {path}: {exc.strerror or exc}", field="out") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return str(path)


def read_note(checkpoint: str | Path) -> tuple[str, str]:
    """The note's text and a label naming where it came from (text, path or s3:// URI)."""
    if isinstance(checkpoint, str) and "\n" in checkpoint:
        return checkpoint, "(text)"
    source = str(checkpoint)
    if source.startswith("s3://"):
        bucket, key = _s3_parts(source, "checkpoint")
        with _s3_errors("read", source):
            data = _s3_client(bucket).get_object(Bucket=bucket, Key=key)["Body"].read(MAX_NOTE + 1)
    else:
        try:
            with open(source, "rb") as fh:
                data = fh.read(MAX_NOTE + 1)
        except OSError as exc:
            raise InvalidInput(
                f"checkpoint {source}: cannot read: {exc.strerror or exc}", field="checkpoint"
            ) from exc
    if len(data) > MAX_NOTE:
        raise IntegrityError(f"checkpoint {source}: larger than {MAX_NOTE} bytes; not a checkpoint")
    try:
        return data.decode("utf-8"), source
    except UnicodeDecodeError:
        raise IntegrityError(f"checkpoint {source}: not UTF-8 text; not a checkpoint") from None


def _s3_parts(uri: str, field: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise InvalidInput(f"{field}: {uri!r} is not s3://bucket/key", field=field)
    return bucket, key


def _s3_client(bucket: str) -> Any:
    # The artifact store's client: same endpoint, retries, timeouts and credentials.
    from registry.artifacts.s3 import S3ArtifactStore

    return S3ArtifactStore.from_uri(f"s3://{bucket}").client


@contextmanager
def _s3_errors(action: str, uri: str) -> Iterator[None]:
    import urllib3.exceptions
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        detail = f"{err.get('Code', 'error')}: {err.get('Message') or exc}"
        raise ArtifactStoreError(f"checkpoint {uri}: cannot {action}: {detail}", location=uri) from exc
    except (BotoCoreError, Boto3Error, urllib3.exceptions.HTTPError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactStoreError(f"checkpoint {uri}: cannot {action}: {detail}", location=uri) from exc
