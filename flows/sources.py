"""Reading recent data for the monitor: a file, a glob or the newest partition, local or S3.

No Prefect here. S3 goes through the artifact store's client (``GOVFLOW_S3_ENDPOINT_URL`` and
boto3's credential chain), and every botocore, pandas or pyarrow failure is translated at this
edge into one ``InvalidInput`` line naming the config field (``monitor.source.path: …``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO
from urllib.parse import quote

import pandas as pd
import urllib3.exceptions
from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from pyarrow import ArrowException
from pydantic import ValidationError

from flows.config import GLOB_CHARS, PipelineConfig, SourceSpec
from registry.errors import GovflowError, InvalidInput, map_exceptions

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_READ_FAILURES = (OSError, ValueError, ArrowException)


@dataclass(frozen=True)
class DataSlice:
    """The rows read, the URI that names them, the files they came from and the window applied."""

    frame: pd.DataFrame
    uri: str
    files: tuple[str, ...]
    window: str | None = None


# --- where the files are ---------------------------------------------------------------------


class _LocalFiles:
    """Files on this machine; keys are absolute POSIX paths."""

    def is_file(self, key: str) -> bool:
        return Path(key).is_file()

    def list(self, prefix: str, depth: int | None = None) -> Iterator[str]:
        top = prefix if prefix.endswith("/") else os.path.dirname(prefix) + "/"
        for folder, dirs, files in os.walk(top or "/"):
            rel = os.path.relpath(folder, top)
            if depth is not None and (0 if rel == "." else rel.count("/") + 1) >= depth - 1:
                dirs[:] = []  # a glob of N levels never needs to look deeper
            dirs.sort()
            for name in files:
                key = os.path.join(folder, name)
                if key.startswith(prefix):
                    yield key

    def open(self, key: str) -> IO[bytes]:
        return open(key, "rb")  # noqa: SIM115 - closed by the caller

    def uri(self, key: str) -> str:
        # Readable partition names and patterns (dt=2026-11-29, *.csv); spaces and the rest escaped.
        return "file://" + quote(key, safe="/=*?[]:@,+~-._")

    def errors(self, field: str, where: str) -> AbstractContextManager[None]:
        return map_exceptions({OSError: lambda e: _unreadable(field, where, e)})


class _S3Files:
    """Objects in one bucket, through the artifact store's configured boto3 client."""

    def __init__(self, bucket: str) -> None:
        from registry.artifacts.s3 import S3ArtifactStore

        self.bucket = bucket
        store = S3ArtifactStore.from_uri(f"s3://{bucket}")
        self.client, self.endpoint = store.client, store.endpoint_url

    def is_file(self, key: str) -> bool:
        if not key or key.endswith("/"):
            return False
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str, depth: int | None = None) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"]

    def open(self, key: str) -> IO[bytes]:
        return io.BytesIO(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def errors(self, field: str, where: str) -> AbstractContextManager[None]:
        def client_error(exc: BaseException) -> GovflowError:
            assert isinstance(exc, ClientError)
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code == "NoSuchBucket":
                return InvalidInput(f"{field}: bucket {self.bucket} does not exist ({where})", field=field)
            if code in ("404", "NoSuchKey", "NotFound"):
                return InvalidInput(f"{field}: no such object {where}", field=field)
            return InvalidInput(
                f"{field}: cannot read {where}: {code}: {err.get('Message', '')}", field=field
            )

        def unreachable(exc: BaseException) -> GovflowError:
            endpoint = f" (endpoint {self.endpoint})" if self.endpoint else ""
            return InvalidInput(f"{field}: cannot reach {where}{endpoint}: {_line(exc)}", field=field)

        failures = (BotoCoreError, Boto3Error, urllib3.exceptions.HTTPError, OSError)
        return map_exceptions({ClientError: client_error, **{f: unreachable for f in failures}})


_Files = _LocalFiles | _S3Files


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "…" if len(text) > 200 else text) or type(exc).__name__


def _unreadable(field: str, where: str, exc: BaseException) -> InvalidInput:
    return InvalidInput(f"{field}: cannot read {where}: {_line(exc)}", field=field)


# --- which files -----------------------------------------------------------------------------


def _open_part(key: str, prefix: str) -> list[str]:
    """The segments of ``key`` below ``prefix`` (the part the source's path leaves open)."""
    return key[len(prefix) :].split("/")


def _is_data(open_part: list[str], spec: SourceSpec) -> bool:
    # Markers and scratch files (_SUCCESS, .crc, _temporary/) sit beside partitions; never data.
    if any(not seg or seg[0] in "._" for seg in open_part):
        return False
    return spec.format is not None or Path(open_part[-1]).suffix.lower() in SUFFIXES


def _select(files: _Files, key: str, spec: SourceSpec, where: str, shown: str) -> tuple[list[str], str]:
    """The keys to read in name order, and the URI naming them; refuses when nothing matches.

    ``where`` is the field named in refusals."""
    if any(c in GLOB_CHARS for c in key):
        first = min(key.index(c) for c in GLOB_CHARS if c in key)
        folder = key[: key.rfind("/", 0, first) + 1]
        pattern = _open_part(key, folder)
        with files.errors(where, shown):
            listed = list(files.list(key[:first], depth=len(pattern)))
        matches = [
            k
            for k in listed
            if len(parts := _open_part(k, folder)) == len(pattern)
            and all(fnmatchcase(s, p) for s, p in zip(parts, pattern, strict=True))
            and _is_data(parts, spec)
        ]
    else:
        with files.errors(where, shown):
            if not key.endswith("/") and files.is_file(key):
                return [key], files.uri(key)
            folder = key.rstrip("/") + "/"
            matches = [k for k in files.list(folder) if _is_data(_open_part(k, folder), spec)]
    if not matches:
        raise InvalidInput(f"{where}: no file matches {shown}", field=where)
    matches.sort()
    if spec.pick == "all":
        return matches, files.uri(matches[0]) if len(matches) == 1 else shown
    # The newest entry at the first open level: a file, or a partition folder and all files under it.
    newest = max(_open_part(k, folder)[0] for k in matches)
    chosen = [k for k in matches if _open_part(k, folder)[0] == newest]
    entry = folder + newest
    return chosen, files.uri(entry if chosen == [entry] else entry + "/")


# --- reading and windowing -------------------------------------------------------------------


def _read_one(files: _Files, key: str, spec: SourceSpec, name: str) -> pd.DataFrame:
    where = files.uri(key)
    fmt = spec.format or SUFFIXES.get(Path(key).suffix.lower())
    if fmt is None:
        raise InvalidInput(f"{name}: {where}: use .csv or .parquet (or set the format)", field=name)
    with files.errors(name, where):
        raw = files.open(key)
    try:
        with raw:
            return pd.read_csv(raw) if fmt == "csv" else pd.read_parquet(raw)
    except _READ_FAILURES as exc:
        raise InvalidInput(f"{name}: cannot read {where} as {fmt}: {_line(exc)}", field=name) from exc


def _timestamps(column: pd.Series) -> pd.Series:
    """UTC timestamps: ISO 8601 fast, anything else dateutil can read element by element."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return pd.to_datetime(column, utc=True)
    try:
        return pd.to_datetime(column, utc=True, format="ISO8601")
    except ValueError:
        return pd.to_datetime(column, utc=True, format="mixed")


def _window(frame: pd.DataFrame, spec: SourceSpec, field: str) -> tuple[pd.DataFrame, str | None]:
    notes = []
    if spec.time_column is not None:
        name, col = f"{field}.time_column", spec.time_column
        if col not in frame.columns:
            raise InvalidInput(f"{name}: no column {col!r} in the data", field=name)
        if pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]):
            raise InvalidInput(f"{name}: {col!r} holds numbers, not timestamps", field=name)
        try:
            stamps = _timestamps(frame[col])
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(
                f"{name}: {col!r} is not readable as timestamps: {_line(exc)}", field=name
            ) from exc
        order = stamps.sort_values(kind="stable").index
        frame, stamps = frame.loc[order], stamps.loc[order]
        if spec.last is not None:
            end = datetime.now(UTC) if spec.until == "now" else stamps.max()
            start = end - timedelta(seconds=spec.last)
            frame = frame[(stamps >= start).to_numpy()]
            notes.append(f"{col} >= {start.isoformat()}")
            if frame.empty:
                raise InvalidInput(
                    f"{field}.last: no rows with {col} in the {spec.last} s before {end.isoformat()} "
                    f"(newest {stamps.max()})",
                    field=f"{field}.last",
                )
    if spec.rows is not None:
        frame = frame.tail(spec.rows)
        notes.append(f"last {spec.rows} rows")
    return frame.reset_index(drop=True), ", ".join(notes) or None


def read_source(
    spec: SourceSpec, base: PipelineConfig | str, field: str = "monitor.source", path_field: str | None = None
) -> DataSlice:
    """Read what ``spec`` names: matched files concatenated in name order, then windowed.

    Relative local paths resolve against the config's ``base_dir`` (or the folder given).
    Refuses, naming the field: no matching file, a missing bucket or object, an unreadable file,
    an unknown format, a missing or unparseable time column, an empty result.
    """
    config = base if isinstance(base, PipelineConfig) else None
    location = (config or _bare(base)).resolve_uri(spec.path)
    files: _Files
    if location.startswith("s3://"):
        bucket, _, key = location[len("s3://") :].partition("/")
        files = _S3Files(bucket)
    else:
        files, key = _LocalFiles(), Path(location).as_posix() + ("/" if location.endswith("/") else "")
    shown = location if location.startswith("s3://") else _LocalFiles().uri(key)
    name = path_field or f"{field}.path"
    keys, uri = _select(files, key, spec, name, shown)
    frames = [_read_one(files, k, spec, name) for k in keys]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise InvalidInput(f"{name}: {uri} holds no rows", field=name)
    frame, window = _window(frame, spec, field)
    return DataSlice(frame=frame, uri=uri, files=tuple(files.uri(k) for k in keys), window=window)


def _bare(base_dir: str) -> PipelineConfig:
    # Only for resolve_uri: a config whose sole meaningful field is base_dir.
    return PipelineConfig.model_construct(base_dir=base_dir)


def read_slice(config: PipelineConfig, data_path: str | None = None) -> DataSlice:
    """An explicit ``data_path`` (file, glob or folder; no window), else ``config.monitor.source``.

    Refuses when neither is given.
    """
    if data_path is not None:
        try:
            spec = SourceSpec(path=data_path)
        except ValidationError as exc:
            raise InvalidInput(f"data_path: {exc.errors()[0]['msg']}", field="data_path") from None
        return read_source(spec, config, field="data_path", path_field="data_path")
    if config.monitor.source is None:
        raise InvalidInput(
            "monitor.source: no data to monitor: give a data path or set monitor.source in the config",
            field="monitor.source",
        )
    return read_source(config.monitor.source, config)


def read_recent(config: PipelineConfig) -> tuple[pd.DataFrame, str]:
    """The recent data ``config.monitor.source`` names, and its URI."""
    got = read_slice(config)
    return got.frame, got.uri


def read_path(path: str, base_dir: str = ".") -> tuple[pd.DataFrame, str]:
    """An explicit data location (file, glob or folder; local or s3://) and its URI."""
    got = read_slice(_bare(base_dir), path)
    return got.frame, got.uri


__all__ = ["DataSlice", "read_path", "read_recent", "read_slice", "read_source"]
