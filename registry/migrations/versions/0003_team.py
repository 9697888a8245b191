"""Team mode: policy history, waivers, users, approval codes, decision channels.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from registry.db.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("channel", sa.String(32)))
        batch.add_column(sa.Column("claimed_by", sa.String(128)))
    op.create_table(
        "policy_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("policies.sha256"), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_at", UTCDateTime, nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "waivers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False, index=True),
        sa.Column("gate", sa.String(128), nullable=False),
        sa.Column("evidence_id", sa.Integer, sa.ForeignKey("evidence.id"), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("name_key", sa.String(128), nullable=False, unique=True),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("token_id", sa.String(32), unique=True),
        sa.Column("token_hash", sa.String(128)),
        sa.Column("token_salt", sa.String(64)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("rotated_at", UTCDateTime),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("revoked_at", UTCDateTime),
    )
    op.create_table(
        "approval_codes",
        sa.Column("code_id", sa.String(32), primary_key=True),
        sa.Column("code_hash", sa.String(128), nullable=False),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("review_round", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("approval_codes")
    op.drop_table("users")
    op.drop_table("waivers")
    op.drop_table("policy_history")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("channel")
