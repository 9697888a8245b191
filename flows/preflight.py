"""Preflight: every data check that can fail without training, run before anything is registered.

The retrain runs it as its data gate, and ``govflow config check`` runs it on its own. It looks
at the loaded frames only (no Prefect, no registry): rows present, target, feature and sensitive
columns present, sensitive columns complete, a two-valued classification target and which value
is positive, type drift against the training reference, numeric columns spoiled by stray
strings, and the data contract. A failure is a failed data gate whose evidence lists each
problem with sample values; a config that cannot say which label is positive is refused.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from checks.data import failure_gate, validate
from checks.result import GateResult
from checks.types import stray_strings, type_drift
from flows.config import PipelineConfig
from flows.data import PipelineData
from registry.errors import InvalidInput

SAMPLE = 5


def data_gate(
    config: PipelineConfig, data: PipelineData, reference_schema: dict[str, str] | None = None
) -> tuple[GateResult, Any]:
    """The data gate and the positive label, from the preflight checks and the contract.

    ``reference_schema`` (column → dtype, e.g. the production version's input schema) is what
    the training columns' types are compared with; the eval rows are compared with the train
    rows. Refuses with ``InvalidInput`` (field ``positive_label``) a two-valued target whose
    positive value cannot be told: not 0/1 or boolean and no ``positive_label``, or a
    ``positive_label`` that is not one of its values.
    """
    start = time.perf_counter()
    frames = {"train": data.train, "eval": data.eval}
    failures: list[dict[str, Any]] = []
    checks = 0
    required = {config.target: "target"}
    required |= {c: "features" for c in config.features or []}
    required |= {c: "sensitive_features" for c in config.sensitive_features}
    for role, df in frames.items():
        checks += 1 + len(required)
        if len(df) == 0:
            failures.append(_fail(role, None, "rows", f"{role}: no rows (an empty or header-only file)"))
        for column, field in required.items():
            if column not in df.columns:
                failures.append(
                    _fail(role, column, "column_exists", f"{role}: {field} column {column!r} is missing")
                )
        for column in config.sensitive_features:
            if column in df.columns:
                checks += 1
                failures += _complete(role, df[column], "sensitive column")
        if config.target in df.columns and len(df):
            checks += 1
            failures += _complete(role, df[config.target], "target")
            if config.task == "classification":
                checks += 1
                failures += _two_valued(role, df[config.target])

    positive = target_positive(config, data.train)

    declared_text = {
        c.name
        for c in (config.contract.columns if config.contract else [])
        if c.dtype in ("string", "category")
    }
    train_schema = {str(c): str(t) for c, t in data.train.dtypes.items()}
    checks += 3 * len(train_schema)
    if reference_schema:
        failures += [f | {"data": "train"} for f in type_drift(data.train, reference_schema)]
    if len(data.train):  # a header-only file's columns are all text: nothing to compare with
        failures += [f | {"data": "eval"} for f in type_drift(data.eval, train_schema)]
    for role, df in frames.items():
        failures += [f | {"data": role} for f in stray_strings(df, skip=declared_text)]

    label = "data"
    details: dict[str, Any] = {"positive_label": positive, "eval_rows": len(data.eval)}
    if config.contract is not None:
        contract = validate(data.train, config.contract)
        failures += [f | {"data": "train"} for f in contract.details["failures"]]
        checks += int(contract.details["checks"])
        label = config.contract.name
        details |= {"contract": config.contract.name, "skipped_columns": contract.details["skipped_columns"]}
    return (
        failure_gate(
            "data",
            failures,
            rows=len(data.train),
            checks=checks,
            label=label,
            details=details,
            duration=time.perf_counter() - start,
        ),
        positive,
    )


def target_positive(config: PipelineConfig, train: pd.DataFrame) -> Any:
    """The positive label of a two-valued training target, else None (the gate reports why).

    Refuses like ``positive_label``; the retrain calls it in the flow itself, so the refusal is
    one line rather than a failed task's traceback.
    """
    if config.task != "classification" or config.target not in train.columns:
        return None
    if train[config.target].nunique() != 2:  # two_valued fails the gate instead
        return None
    return positive_label(config, train[config.target])


def positive_label(config: PipelineConfig, y: pd.Series) -> Any:
    """The target value scored as positive: ``positive_label`` matched to the data's own type.

    Without ``positive_label`` a boolean target's positive is True and a 0/1 target's is 1.
    A value read as ``1`` from a file matches a configured ``"1"``. Refuses (field
    ``positive_label``) a two-valued target it cannot decide on; with fewer values (a
    monitoring window of one class) the configured label is kept as written.
    """
    if config.task != "classification":
        return None
    values = [v.item() if hasattr(v, "item") else v for v in pd.unique(y.dropna())]
    shown = ", ".join(repr(v) for v in sorted(values, key=str)[:SAMPLE])
    label = config.positive_label
    if label is None:
        if pd.api.types.is_bool_dtype(y.dtype) or set(values) <= {0, 1}:
            return True if pd.api.types.is_bool_dtype(y.dtype) else 1
        raise InvalidInput(
            f"positive_label: target {config.target!r} has values {shown}, not 0/1 or true/false: "
            "set positive_label to the value that counts as positive (quote 'Yes'/'No' in YAML)",
            field="positive_label",
        )
    for v in values:
        if v == label or str(v) == str(label):
            return v
    if len(values) >= 2:
        raise InvalidInput(
            f"positive_label: {label!r} is not a value of target {config.target!r} ({shown})",
            field="positive_label",
        )
    return label


def _complete(role: str, col: pd.Series, what: str) -> list[dict[str, Any]]:
    missing = int(col.isna().sum())
    if not missing:
        return []
    rows = [r.item() if hasattr(r, "item") else r for r in col.index[col.isna()][:SAMPLE].tolist()]
    return [
        _fail(
            role,
            str(col.name),
            "complete",
            f"{role}: {what} {col.name!r} has {missing} missing values",
            unexpected_count=missing,
            sample_rows=rows,
        )
    ]


def _two_valued(role: str, y: pd.Series) -> list[dict[str, Any]]:
    values = pd.unique(y.dropna())
    if len(values) == 2:
        return []
    sample = [v.item() if hasattr(v, "item") else v for v in values[:SAMPLE]]
    return [
        _fail(
            role,
            str(y.name),
            "two_valued",
            f"{role}: a classification target needs two values, {y.name!r} has {len(values)}",
            observed=len(values),
            sample=sample,
        )
    ]


def _fail(role: str, column: str | None, expectation: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"column": column, "expectation": expectation, "message": message, "data": role, **extra}
