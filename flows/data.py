"""Loading the pipeline's data and describing it for lineage (no Prefect here)."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyarrow import ArrowException

from flows.config import PipelineConfig, SplitRule
from flows.demo_data import write_example
from registry.datasets import hash_file, schema_fingerprint
from registry.entities import DatasetRef, DatasetRole
from registry.errors import InvalidInput


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; refuse other formats and unreadable files."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (OSError, ValueError, ArrowException) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise InvalidInput(f"data {path}: cannot read: {detail}", field="data") from exc
    raise InvalidInput(f"data {path}: use .csv or .parquet", field="data")


def ensure_example(config: PipelineConfig) -> list[Path]:
    """Write the config's built-in example data where it is missing; log one line when it does."""
    written = write_example(config)
    if written:
        log = run_logger("govflow.data")
        where = os.path.commonpath([str(p.parent) for p in written])
        log.info(
            "data.example %s: wrote %d missing data files under %s", config.data.example, len(written), where
        )
    return written


def describe(role: str, path: Path, df: pd.DataFrame) -> DatasetRef:
    """Lineage record of one data file: URI, content digest, rows and schema fingerprint."""
    digest, _ = hash_file(path)
    schema = {str(c): str(t) for c, t in df.dtypes.items()}
    return DatasetRef(
        role=DatasetRole(role),
        uri=path.resolve().as_uri(),
        sha256=digest,
        rows=len(df),
        schema_fingerprint=schema_fingerprint(schema),
    )


def describe_split(role: str, path: Path, df: pd.DataFrame, rule: SplitRule) -> DatasetRef:
    """Lineage record of one side of a split file: its own rows' digest and count, the rule in the URI.

    The URI is the file's, with a fragment naming the side and the rule
    (``#split=train&seed=0&eval_fraction=0.25``), so train and eval are distinct records and
    the split can be redone from lineage alone.
    """
    schema = {str(c): str(t) for c, t in df.dtypes.items()}
    fragment = f"split={role}&seed={rule.seed}&eval_fraction={rule.eval_fraction:g}"
    return DatasetRef(
        role=DatasetRole(role),
        uri=f"{path.resolve().as_uri()}#{fragment}",
        sha256=rows_digest(df),
        rows=len(df),
        schema_fingerprint=schema_fingerprint(schema),
    )


def rows_digest(df: pd.DataFrame) -> str:
    """sha256 of the rows written as CSV without the index: same rows, same digest."""
    return hashlib.sha256(df.to_csv(index=False).encode("utf-8")).hexdigest()


def split(full: pd.DataFrame, rule: SplitRule) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and eval rows of one frame: a seeded draw holds out ``eval_fraction`` of the rows."""
    rng = np.random.default_rng(rule.seed)
    mask = rng.random(len(full)) < rule.eval_fraction
    return full[~mask].reset_index(drop=True), full[mask].reset_index(drop=True)


@dataclass(frozen=True)
class PipelineData:
    """Train, eval and reference frames with their lineage records."""

    train: pd.DataFrame
    eval: pd.DataFrame
    reference: pd.DataFrame
    datasets: list[DatasetRef]
    positive_label: Any = None  # the target value scored as positive (classification), set by preflight
    source_sha256: str | None = None  # the digest of the one file that was split, if any


def load(config: PipelineConfig) -> PipelineData:
    """Load the configured data; one file is split by the config's rule.

    With ``data.example`` set, missing files are first written with the built-in data set.
    """
    ensure_example(config)
    spec = config.data
    if spec.path is not None:
        path = config.resolve(spec.path)
        assert path is not None
        full = read_table(path)
        train, evaluation = split(full, spec.split)
        datasets = [
            describe_split("train", path, train, spec.split),
            describe_split("eval", path, evaluation, spec.split),
        ]
        source_sha256, _ = hash_file(path)
    else:
        train_path, eval_path = config.resolve(spec.train), config.resolve(spec.eval)
        assert train_path is not None and eval_path is not None
        train, evaluation = read_table(train_path), read_table(eval_path)
        datasets = [describe("train", train_path, train), describe("eval", eval_path, evaluation)]
        source_sha256 = None
    reference = train
    if spec.reference is not None:
        ref_path = config.resolve(spec.reference)
        assert ref_path is not None
        reference = read_table(ref_path)
        datasets.append(describe("reference", ref_path, reference))
    # Missing columns, empty files and odd targets are the preflight's to report (flows.preflight).
    return PipelineData(
        train=train, eval=evaluation, reference=reference, datasets=datasets, source_sha256=source_sha256
    )


def feature_columns(config: PipelineConfig, df: pd.DataFrame) -> list[str]:
    """The model's input columns: configured, or all but the target and sensitive columns."""
    if config.features is not None:
        missing = [c for c in config.features if c not in df.columns]
        if missing:
            raise InvalidInput(f"features: {', '.join(missing)} not in the data", field="features")
        return list(config.features)
    skip = {config.target, *config.sensitive_features}
    return [c for c in df.columns if c not in skip]


def run_logger(name: str) -> Any:
    """The Prefect run's logger inside a Prefect run, else the standard logger ``name``.

    Prefect is looked up only when already imported, so other orchestrators never load it.
    """
    if "prefect" in sys.modules:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        try:
            return get_run_logger()
        except MissingContextError:
            pass
    return logging.getLogger(name)
