"""Gate results: what every check returns, and the report that aggregates them.

A ``GateResult`` is the evidence an auditor reads, so it must survive JSON (the registry stores
it, Prefect renders it). Its ``details`` are normalised at construction: numpy scalars become
Python numbers and non-finite floats become ``None``, so a result is always JSON-serializable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON data: numpy → Python, NaN/inf → None, keys → str."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or isinstance(value, str):
        return value
    # Timestamps, categories and other objects are evidence too; keep their readable form.
    return str(value)


class GateResult(BaseModel):
    """The outcome of one quality gate on one model version or dataset."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, description="Gate name, as the policy refers to it (e.g. 'fairness').")
    passed: bool = Field(description="True when the gate is cleared.")
    metric: str = Field(description="The quantity the gate decides on (e.g. 'roc_auc').")
    value: float | None = Field(
        default=None, description="Observed value of `metric`; None when it could not be computed."
    )
    threshold: float | None = Field(
        default=None, description="The limit `value` was compared to; see `details` for others."
    )
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Gate-specific evidence (per column, group or feature); JSON-serializable.",
    )
    duration: float = Field(default=0.0, ge=0.0, description="Wall time of the check in seconds.")
    message: str = Field(default="", description="One-line human summary of the outcome.")

    @field_validator("value", "threshold")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        # The registry accepts finite metrics only; an undefined value is None, never NaN.
        if v is not None and not math.isfinite(v):
            raise ValueError("must be finite or None")
        return v

    @field_validator("details", mode="before")
    @classmethod
    def _plain(cls, v: Any) -> Any:
        return jsonable(v) if isinstance(v, Mapping) else v


class GateReport(BaseModel):
    """Several gate results for one version; passes only when every gate passed."""

    results: list[GateResult] = Field(
        default_factory=list, description="Gate results, at most one per gate name."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> GateReport:
        names = [r.name for r in self.results]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            # Policy looks gates up by name; two results under one name would be ambiguous.
            raise ValueError(f"duplicate gate names: {dupes}")
        return self

    @property
    def passed(self) -> bool:
        """True when there is at least one result and all of them passed."""
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        """The results that did not pass."""
        return [r for r in self.results if not r.passed]

    def get(self, name: str) -> GateResult | None:
        """The result named ``name``, or None."""
        return next((r for r in self.results if r.name == name), None)

    def as_rows(self) -> list[dict[str, Any]]:
        """One flat dict per gate, ready for a Prefect table artifact."""
        return [
            {
                "gate": r.name,
                "passed": r.passed,
                "metric": r.metric,
                "value": _fmt(r.value),
                "threshold": _fmt(r.threshold),
                "duration_s": round(r.duration, 3),
                "message": r.message,
            }
            for r in self.results
        ]

    def to_markdown(self) -> str:
        """A Markdown table of the results, with an overall verdict line."""
        head = "| gate | passed | metric | value | threshold | seconds | message |"
        rule = "|---|---|---|---|---|---|---|"
        lines = [
            f"**Gates: {'PASSED' if self.passed else 'FAILED'}** "
            f"({len(self.results) - len(self.failed)}/{len(self.results)} passed)",
            "",
            head,
            rule,
        ]
        for row in self.as_rows():
            cells = [
                row["gate"],
                "yes" if row["passed"] else "**no**",
                row["metric"],
                row["value"],
                row["threshold"],
                f"{row['duration_s']:.3f}",
                row["message"].replace("|", "\\|"),
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.6g}"
