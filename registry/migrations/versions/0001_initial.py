"""Initial registry schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from registry.db.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PRODUCTION_ONLY = sa.text("stage = 'production'")


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("review_round", sa.Integer, nullable=False, server_default="0"),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_size", sa.BigInteger, nullable=False),
        sa.Column("artifact_format", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("input_schema", sa.JSON, nullable=False),
        sa.Column("drift_reference", sa.JSON),
        sa.Column("description", sa.Text),
        sa.Column("code_repo", sa.Text),
        sa.Column("code_commit", sa.String(64)),
        sa.Column("code_dirty", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("run_id", sa.String(64)),
        sa.Column("flow_name", sa.String(256)),
        sa.Column("registered_by", sa.String(128), nullable=False),
        sa.Column("registered_at", UTCDateTime, nullable=False),
        sa.Column("stage_changed_at", UTCDateTime, nullable=False),
        sa.Column("rolled_back", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("rollback_reason", sa.Text),
        sa.UniqueConstraint("model_id", "version", name="uq_versions_model_id_version"),
    )
    op.create_index("ix_versions_artifact_sha256", "versions", ["artifact_sha256"])
    op.create_index("ix_versions_code_commit", "versions", ["code_commit"])
    op.create_index(
        "uq_versions_one_production",
        "versions",
        ["model_id"],
        unique=True,
        sqlite_where=PRODUCTION_ONLY,
        postgresql_where=PRODUCTION_ONLY,
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("rows", sa.BigInteger),
        sa.Column("schema_fingerprint", sa.String(64)),
    )
    for col in ("version_id", "uri", "sha256"):
        op.create_index(f"ix_datasets_{col}", "datasets", [col])
    op.create_table(
        "aliases",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
        sa.Column("alias", sa.String(128), primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_aliases_version_id", "aliases", ["version_id"])
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("previous", sa.Integer),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_alias_history_model_alias", "alias_history", ["model_id", "alias", "id"])
    op.create_table(
        "stage_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("from_stage", sa.String(16)),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("approved_by", sa.JSON),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_stage_history_model_to", "stage_history", ["model_id", "to_stage", "id"])
    op.create_index("ix_stage_history_model_at", "stage_history", ["model_id", "at"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("target_stage", sa.String(16), nullable=False),
        sa.Column("review_round", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_approvals_version_id", "approvals", ["version_id"])
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("gate", sa.String(128), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_evidence_version_gate", "evidence", ["version_id", "gate", "id"])
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("db_user", sa.String(128)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128)),
        sa.Column("version", sa.Integer),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_events_model", "audit_events", ["model"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    for table in (
        "audit_head",
        "audit_events",
        "evidence",
        "approvals",
        "stage_history",
        "alias_history",
        "aliases",
        "datasets",
        "versions",
        "models",
    ):
        op.drop_table(table)
