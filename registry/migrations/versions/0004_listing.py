"""An index for listing a model's versions by stage, newest first (a page stays flat with size).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_versions_model_stage_version", "versions", ["model_id", "stage", "version"])


def downgrade() -> None:
    op.drop_index("ix_versions_model_stage_version", table_name="versions")
