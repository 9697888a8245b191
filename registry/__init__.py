"""govflow's model registry: the single source of truth for which model is live and why."""

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
