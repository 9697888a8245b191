"""Quality gates: pure functions that return ``GateResult`` evidence; no Prefect, no I/O.

Names are exported lazily so that ``import checks`` does not pay for Great Expectations
(about 2 s) or fairlearn when a flow only needs, say, the drift gate.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from checks.champion import champion_gate
    from checks.data import ColumnSpec, DataContract, validate
    from checks.drift import DriftReference, drift_gate
    from checks.fairness import fairness_gate, fairness_metrics
    from checks.performance import metric_gate
    from checks.result import GateReport, GateResult

_EXPORTS = {
    "GateResult": "checks.result",
    "GateReport": "checks.result",
    "ColumnSpec": "checks.data",
    "DataContract": "checks.data",
    "validate": "checks.data",
    "metric_gate": "checks.performance",
    "fairness_gate": "checks.fairness",
    "fairness_metrics": "checks.fairness",
    "champion_gate": "checks.champion",
    "DriftReference": "checks.drift",
    "drift_gate": "checks.drift",
}

__all__ = [
    "ColumnSpec",
    "DataContract",
    "DriftReference",
    "GateReport",
    "GateResult",
    "champion_gate",
    "drift_gate",
    "fairness_gate",
    "fairness_metrics",
    "metric_gate",
    "validate",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'checks' has no attribute {name!r}")
    return getattr(import_module(module), name)
