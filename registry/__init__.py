"""govflow's model registry: the single source of truth for which model is live and why."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Exports load on first use (PEP 562): `import registry.errors` (every CLI call, --version)
# must not pay for SQLAlchemy and the store.
_EXPORTS = {
    **dict.fromkeys(
        (
            "Approval",
            "ArtifactRef",
            "AuditEvent",
            "CodeRef",
            "ColumnSpec",
            "DatasetRef",
            "DatasetRole",
            "Evidence",
            "Lineage",
            "ModelSummary",
            "ModelVersion",
            "ProductionAt",
            "RollbackResult",
            "RunRef",
            "StageChange",
            "VerifyReport",
            "VersionRef",
            "VersionSpec",
        ),
        "registry.entities",
    ),
    "GovflowError": "registry.errors",
    "Policy": "registry.policy",
    "StageRule": "registry.policy",
    "Registry": "registry.registry",
    "Stage": "registry.stages",
}

__all__ = [
    "Approval",
    "ArtifactRef",
    "AuditEvent",
    "CodeRef",
    "ColumnSpec",
    "DatasetRef",
    "DatasetRole",
    "Evidence",
    "GovflowError",
    "Lineage",
    "ModelSummary",
    "ModelVersion",
    "Policy",
    "ProductionAt",
    "Registry",
    "RollbackResult",
    "RunRef",
    "Stage",
    "StageChange",
    "StageRule",
    "VerifyReport",
    "VersionRef",
    "VersionSpec",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from registry.entities import (
        Approval,
        ArtifactRef,
        AuditEvent,
        CodeRef,
        ColumnSpec,
        DatasetRef,
        DatasetRole,
        Evidence,
        Lineage,
        ModelSummary,
        ModelVersion,
        ProductionAt,
        RollbackResult,
        RunRef,
        StageChange,
        VerifyReport,
        VersionRef,
        VersionSpec,
    )
    from registry.errors import GovflowError
    from registry.policy import Policy, StageRule
    from registry.registry import Registry
    from registry.stages import Stage
