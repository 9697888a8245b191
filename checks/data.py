"""Data validation gate: a declarative ``DataContract`` checked with Great Expectations 1.x.

Schema (column presence, dtype, unexpected extra columns) is checked with pandas before GX runs:
GX 1.24's type expectations do not recognise pandas 3's ``str`` dtype, and a value expectation
on a missing column raises inside GX. Columns that fail the schema are reported and their value
expectations skipped. Everything else — nullability, ranges, allowed sets, uniqueness, row
count — is an expectation in a GX suite run in one ephemeral context per process.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from checks.result import GateResult
from checks.types import KINDS, SAMPLE_SIZE, failure_record, offending_values
from registry.errors import GovflowError, InvalidInput, map_exceptions

Scalar = str | int | float | bool


class ColumnSpec(BaseModel):
    """What one column must look like."""

    name: str = Field(min_length=1, description="Column name.")
    dtype: str | None = Field(
        default=None,
        description=f"A kind ({', '.join(KINDS)}) or an exact pandas dtype name ('int64').",
    )
    required: bool = Field(default=True, description="A missing column fails the gate.")
    nullable: bool = Field(default=True, description="Missing values are allowed.")
    min: float | None = Field(default=None, description="Smallest allowed value (inclusive).")
    max: float | None = Field(default=None, description="Largest allowed value (inclusive).")
    allowed: list[Scalar] | None = Field(default=None, description="The only allowed values.")
    unique: bool = Field(default=False, description="Values must not repeat.")
    mostly: float = Field(default=1.0, gt=0, le=1, description="Share of rows each value rule must hold for.")

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: str | None) -> str | None:
        if v is None or v in KINDS:
            return v
        try:
            pd.api.types.pandas_dtype(v)
        except TypeError as exc:
            raise ValueError(f"unknown dtype {v!r}: use one of {KINDS} or a pandas dtype") from exc
        return v

    @model_validator(mode="after")
    def _coherent(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} > max {self.max}")
        if (self.min is not None or self.max is not None) and self.dtype in ("string", "category", "bool"):
            raise ValueError(f"column {self.name!r}: a range needs a numeric dtype")
        if self.dtype != "bool" and any(isinstance(v, bool) for v in self.allowed or ()):
            # PyYAML reads an unquoted Yes/No/on/off as a boolean, so the rule would never match text.
            raise PydanticCustomError(
                "invalid",
                f"column {self.name!r}: allowed holds a boolean (an unquoted Yes/No/on/off in YAML); "
                "quote the values ('Yes', 'No') or set dtype: bool",
            )
        return self


class DataContract(BaseModel):
    """The columns, types and value rules a dataset must satisfy; lives in pipeline config."""

    name: str = Field(default="data", description="Contract name, shown in the evidence.")
    columns: list[ColumnSpec] = Field(
        description="Column specs; a mapping name → spec is accepted too (YAML-friendly)."
    )
    min_rows: int = Field(default=1, ge=0, description="Fewest rows; 1 makes empty data fail.")
    max_rows: int | None = Field(default=None, ge=0, description="Most rows, if bounded.")
    extra_columns: Literal["allow", "forbid"] = Field(
        default="allow", description="Whether columns not in the contract are allowed."
    )

    @field_validator("columns", mode="before")
    @classmethod
    def _mapping_form(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return [{"name": k, **(spec or {})} for k, spec in v.items()]
        return v

    @model_validator(mode="after")
    def _coherent(self) -> DataContract:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError(f"max_rows {self.max_rows} < min_rows {self.min_rows}")
        return self

    def expectation_suite(self, columns: list[str] | None = None) -> Any:
        """The GX ``ExpectationSuite`` for the value rules, limited to ``columns`` if given."""
        import great_expectations as gx
        import great_expectations.expectations as gxe

        _batch_definition()  # GX suites need an active context even before they are run
        expectations: list[Any] = []
        if self.min_rows > 0 or self.max_rows is not None:
            expectations.append(
                gxe.ExpectTableRowCountToBeBetween(min_value=self.min_rows, max_value=self.max_rows)
            )
        for c in self.columns:
            if columns is not None and c.name not in columns:
                continue
            kw: dict[str, Any] = {"column": c.name, "mostly": c.mostly}
            if not c.nullable:
                expectations.append(gxe.ExpectColumnValuesToNotBeNull(**kw))
            if c.min is not None or c.max is not None:
                expectations.append(gxe.ExpectColumnValuesToBeBetween(**kw, min_value=c.min, max_value=c.max))
            if c.allowed is not None:
                expectations.append(gxe.ExpectColumnValuesToBeInSet(**kw, value_set=c.allowed))
            if c.unique:
                expectations.append(gxe.ExpectColumnValuesToBeUnique(**kw))
        return gx.ExpectationSuite(name=f"govflow-{self.name}", expectations=expectations)


def validate(df: pd.DataFrame, contract: DataContract | dict[str, Any], *, name: str = "data") -> GateResult:
    """Check ``df`` against ``contract``; pass when every schema rule and expectation holds.

    Failures are summarised per column and expectation: unexpected count and percent, a sample
    of bad values (and their row labels), and ``mostly``. A missing column, a wrong dtype or a
    forbidden extra column is a failed gate with a clear message, as is an empty frame (unless
    ``min_rows=0``) and an expectation GX could not evaluate.

    Refuses with ``InvalidInput``: ``df`` that is not a DataFrame; a contract that does not
    validate. A GX failure outside any expectation is a ``GovflowError`` (reason ``gx``).
    """
    start = time.perf_counter()
    if not isinstance(df, pd.DataFrame):
        raise InvalidInput("df must be a pandas DataFrame", field="df")
    if not isinstance(contract, DataContract):
        try:
            contract = DataContract.model_validate(contract)
        except ValidationError as exc:
            raise InvalidInput(f"invalid data contract: {exc}", field="contract") from exc

    failures, checkable = _schema_failures(df, contract)
    suite = contract.expectation_suite(columns=checkable)
    n_expectations = len(suite.expectations)
    if n_expectations:
        batch_definition = _batch_definition()
        from great_expectations.exceptions import GreatExpectationsError
        from great_expectations.validator.v1_validator import Validator

        with map_exceptions({GreatExpectationsError: _gx_error}):
            # ValidationDefinition.run's own core, minus its result store: it would keep every
            # run in memory, and Batch.validate would hash the frame twice (0.2 s per 1M rows).
            validator = Validator(
                batch_definition, result_format="SUMMARY", batch_parameters={"dataframe": df}
            )
            run = validator.validate_expectation_suite(suite)
        failures += [_summarise(r.to_json_dict()) for r in run.results if not r.success]

    return failure_gate(
        name,
        failures,
        rows=len(df),
        checks=_check_count(contract),
        label=contract.name,
        details={
            "contract": contract.name,
            "skipped_columns": [c.name for c in contract.columns if c.name not in checkable],
        },
        duration=time.perf_counter() - start,
    )


def failure_gate(
    name: str,
    failures: list[dict[str, Any]],
    *,
    rows: int,
    checks: int,
    label: str = "data",
    details: dict[str, Any] | None = None,
    duration: float = 0.0,
) -> GateResult:
    """A data gate from failure records (column, expectation, message, optional sample).

    The message lists each failed column with its expectations and up to three sample values,
    so a reader sees *which* values broke a rule, not only that one did.
    """
    by_column: dict[str, list[str]] = {}
    for f in failures:
        where = f["column"] or "<table>"
        if f.get("data") not in (None, "train"):
            where += f" ({f['data']})"  # preflight also checks the eval rows
        by_column.setdefault(where, []).append(f["expectation"] + _sample_text(f))
    passed = not failures
    message = (
        f"{label}: all {checks} checks passed on {rows} rows"
        if passed
        else f"{label}: {len(failures)} of {checks} checks failed: "
        + "; ".join(f"{col}: {', '.join(exps)}" for col, exps in by_column.items())
    )
    return GateResult(
        name=name,
        passed=passed,
        metric="failed_checks",
        value=float(len(failures)),
        threshold=0.0,
        details={
            **(details or {}),
            "rows": rows,
            "checks": checks,
            "failures": failures,
            "failed_by_column": {
                col: [e.split(" (e.g.")[0] for e in exps] for col, exps in by_column.items()
            },
        },
        duration=duration,
        message=message,
    )


def _sample_text(failure: dict[str, Any]) -> str:
    sample = failure.get("sample") or []
    return f" (e.g. {', '.join(repr(v) for v in sample[:3])})" if sample else ""


# --- schema -------------------------------------------------------------------------------


def _schema_failures(df: pd.DataFrame, contract: DataContract) -> tuple[list[dict], list[str]]:
    failures: list[dict[str, Any]] = []
    checkable: list[str] = []
    for c in contract.columns:
        if c.name not in df.columns:
            if c.required:
                failures.append(failure_record("column_exists", c.name, f"column {c.name!r} is missing"))
            continue
        observed = str(df[c.name].dtype)
        if c.dtype is not None and not dtype_matches(df[c.name].dtype, c.dtype):
            sample, rows = offending_values(df[c.name], c.dtype)
            failures.append(
                failure_record(
                    "dtype",
                    c.name,
                    f"column {c.name!r} has dtype {observed}, expected {c.dtype}",
                    expected=c.dtype,
                    observed=observed,
                    sample=sample,
                    sample_rows=rows,
                )
            )
            continue
        checkable.append(c.name)
    if contract.extra_columns == "forbid":
        declared = {c.name for c in contract.columns}
        extra = [str(c) for c in df.columns if c not in declared]
        if extra:
            failures.append(
                failure_record("no_extra_columns", None, f"undeclared columns: {extra}", observed=extra)
            )
    return failures, checkable


def dtype_matches(dtype: Any, expected: str) -> bool:
    """True when a pandas ``dtype`` is of the kind or exact dtype name ``expected``."""
    t = pd.api.types
    is_bool = t.is_bool_dtype(dtype)
    match expected:
        case "int":
            return t.is_integer_dtype(dtype) and not is_bool
        case "float":
            return t.is_float_dtype(dtype)
        case "number":
            return t.is_numeric_dtype(dtype) and not is_bool and not t.is_complex_dtype(dtype)
        case "bool":
            return is_bool
        case "string":
            return t.is_string_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)
        case "category":
            return isinstance(dtype, pd.CategoricalDtype)
        case "datetime":
            return t.is_datetime64_any_dtype(dtype)
        case _:
            return str(dtype) == str(pd.api.types.pandas_dtype(expected))


def _check_count(contract: DataContract) -> int:
    """Schema checks (one per column, one for extras) plus every value expectation."""
    per_column = sum(
        1 + (not c.nullable) + (c.min is not None or c.max is not None) + (c.allowed is not None) + c.unique
        for c in contract.columns
    )
    table = (contract.min_rows > 0 or contract.max_rows is not None) + (contract.extra_columns == "forbid")
    return per_column + table


# --- Great Expectations -------------------------------------------------------------------

_GX_LOCK = threading.Lock()
_GX_BATCH: Any = None


def _batch_definition() -> Any:
    """The whole-dataframe batch definition of this process's one ephemeral GX context."""
    global _GX_BATCH
    with _GX_LOCK:
        if _GX_BATCH is None:
            import great_expectations as gx
            from great_expectations.data_context.types import base
            from great_expectations.data_context.types.base import ProgressBarsConfig

            # GX sets this logger to INFO; its "temporary docs site" notice is noise in every run.
            base.logger.setLevel(logging.WARNING)
            context = gx.get_context(mode="ephemeral")
            # Otherwise tqdm bars go to stderr of every flow run.
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            asset = context.data_sources.add_pandas("govflow").add_dataframe_asset("frame")
            _GX_BATCH = asset.add_batch_definition_whole_dataframe("whole")
        return _GX_BATCH


def _summarise(r: dict[str, Any]) -> dict[str, Any]:
    """One failed GX expectation as evidence: column, kind, counts, bad-value sample, mostly."""
    cfg = r["expectation_config"]
    kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
    res = r.get("result") or {}
    kind = cfg["type"].removeprefix("expect_")
    out: dict[str, Any] = {
        "column": kwargs.get("column"),
        "expectation": kind,
        "mostly": kwargs.get("mostly", 1.0),
        "unexpected_count": res.get("unexpected_count"),
        "unexpected_percent": res.get("unexpected_percent"),
        "element_count": res.get("element_count"),
        "sample": [v["value"] for v in res.get("partial_unexpected_counts", [])][:SAMPLE_SIZE],
        "sample_rows": res.get("partial_unexpected_index_list", [])[:SAMPLE_SIZE],
        "rule": {k: v for k, v in kwargs.items() if k not in ("column", "mostly")},
    }
    if "observed_value" in res:
        out["observed"] = res["observed_value"]
    error = _exception_message(r.get("exception_info") or {})
    if error is not None:
        out["message"] = f"GX could not evaluate: {error}"
    elif out["unexpected_count"] is not None:
        out["message"] = (
            f"{out['unexpected_count']} unexpected values "
            f"({(out['unexpected_percent'] or 0):.3g}%), mostly={out['mostly']}"
        )
    else:
        out["message"] = f"observed {out.get('observed')}, rule {out['rule']}"
    return out


def _exception_message(info: dict[str, Any]) -> str | None:
    # GX reports either one exception, or one per failed metric keyed by the metric's id.
    infos = [info] if "raised_exception" in info else list(info.values())
    for i in infos:
        if isinstance(i, dict) and i.get("raised_exception"):
            return str(i.get("exception_message"))
    return None


def _gx_error(exc: BaseException) -> GovflowError:
    return GovflowError(f"Great Expectations failed: {exc}", reason="gx")
