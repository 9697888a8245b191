"""Loading the pipeline's data and describing it for lineage (no Prefect here)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from pyarrow import ArrowException

from flows.config import PipelineConfig
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
        try:
            log = get_run_logger()
        except MissingContextError:
            log = logging.getLogger("govflow.data")
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


@dataclass(frozen=True)
class PipelineData:
    """Train, eval and reference frames with their lineage records."""

    train: pd.DataFrame
    eval: pd.DataFrame
    reference: pd.DataFrame
    datasets: list[DatasetRef]


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
        rng = np.random.default_rng(spec.split.seed)
        mask = rng.random(len(full)) < spec.split.eval_fraction
        train, evaluation = full[~mask].reset_index(drop=True), full[mask].reset_index(drop=True)
        ref = describe("train", path, full)
        datasets = [ref, ref.model_copy(update={"role": DatasetRole.EVAL})]
    else:
        train_path, eval_path = config.resolve(spec.train), config.resolve(spec.eval)
        assert train_path is not None and eval_path is not None
        train, evaluation = read_table(train_path), read_table(eval_path)
        datasets = [describe("train", train_path, train), describe("eval", eval_path, evaluation)]
    reference = train
    if spec.reference is not None:
        ref_path = config.resolve(spec.reference)
        assert ref_path is not None
        reference = read_table(ref_path)
        datasets.append(describe("reference", ref_path, reference))
    for name, frame in (("train", train), ("eval", evaluation)):
        if config.target not in frame.columns:
            raise InvalidInput(f"data {name}: target column {config.target!r} is missing", field="target")
    return PipelineData(train=train, eval=evaluation, reference=reference, datasets=datasets)


def feature_columns(config: PipelineConfig, df: pd.DataFrame) -> list[str]:
    """The model's input columns: configured, or all but the target and sensitive columns."""
    if config.features is not None:
        missing = [c for c in config.features if c not in df.columns]
        if missing:
            raise InvalidInput(f"features: {', '.join(missing)} not in the data", field="features")
        return list(config.features)
    skip = {config.target, *config.sensitive_features}
    return [c for c in df.columns if c not in skip]
