"""Table definitions (SQLAlchemy Core). The schema itself is created by the Alembic migrations."""

from __future__ import annotations

import sqlalchemy as sa

from registry.db.types import UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    # Per-model version counter, bumped with UPDATE … RETURNING inside the registering transaction.
    sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("review_round", sa.Integer, nullable=False, server_default="0"),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("artifact_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("artifact_size", sa.BigInteger, nullable=False),
    sa.Column("artifact_format", sa.String(32), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("input_schema", sa.JSON, nullable=False),
    sa.Column("drift_reference", sa.JSON),
    sa.Column("description", sa.Text),
    sa.Column("code_repo", sa.Text),
    sa.Column("code_commit", sa.String(64), index=True),
    sa.Column("code_dirty", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("run_id", sa.String(64)),
    sa.Column("flow_name", sa.String(256)),
    sa.Column("registered_by", sa.String(128), nullable=False),
    sa.Column("registered_at", UTCDateTime, nullable=False),
    sa.Column("stage_changed_at", UTCDateTime, nullable=False),
    sa.Column("rolled_back", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("rollback_reason", sa.Text),
    sa.UniqueConstraint("model_id", "version"),
    # Invariant 2: at most one production version per model, enforced by the database.
    sa.Index(
        "uq_versions_one_production",
        "model_id",
        unique=True,
        sqlite_where=sa.text("stage = 'production'"),
        postgresql_where=sa.text("stage = 'production'"),
    ),
    # A page of one stage's versions, newest first, without scanning the model's other versions.
    sa.Index("ix_versions_model_stage_version", "model_id", "stage", "version"),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("uri", sa.Text, nullable=False, index=True),
    sa.Column("sha256", sa.String(64), index=True),
    sa.Column("rows", sa.BigInteger),
    sa.Column("schema_fingerprint", sa.String(64)),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False, index=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

alias_history = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("alias", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("previous", sa.Integer),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_alias_history_model_alias", "model_id", "alias", "id"),
)

stage_history = sa.Table(
    "stage_history",
    metadata,
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
    sa.Index("ix_stage_history_model_to", "model_id", "to_stage", "id"),
    sa.Index("ix_stage_history_model_at", "model_id", "at"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False, index=True),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("target_stage", sa.String(16), nullable=False),
    sa.Column("review_round", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    # How the decision arrived (cli, api, prefect-form, airflow-hitl…) and, for a typed name
    # nobody authenticated, that name: such a decision is a claim, not an identity.
    sa.Column("channel", sa.String(32)),
    sa.Column("claimed_by", sa.String(128)),
)

evidence = sa.Table(
    "evidence",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("gate", sa.String(128), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_evidence_version_gate", "version_id", "gate", "id"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("db_user", sa.String(128)),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("model", sa.String(128), index=True),
    sa.Column("version", sa.Integer),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Every policy a decision was taken under, by the sha256 of its canonical JSON.
policies = sa.Table(
    "policies",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("recorded_by", sa.String(128), nullable=False),
)

# One row: the chain head. Write transactions lock it first, which serializes appends.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# The policy in force is the latest row; every change is appended, never updated.
policy_history = sa.Table(
    "policy_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("policies.sha256"), nullable=False),
    sa.Column("set_by", sa.String(128), nullable=False),
    sa.Column("set_at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text),
)

# An approver's audited decision to let a failed gate stand; bound to the failed result it waives.
waivers = sa.Table(
    "waivers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False, index=True),
    sa.Column("gate", sa.String(128), nullable=False),
    sa.Column("evidence_id", sa.Integer, sa.ForeignKey("evidence.id"), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

# API users of the registry server. Tokens are kept only as salted scrypt hashes.
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    # NFKC + casefold of the name: ``Bob`` and ``ｂｏｂ`` are one user.
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

# One-time approval codes: bound to a principal and a version's review round, single use.
approval_codes = sa.Table(
    "approval_codes",
    metadata,
    sa.Column("code_id", sa.String(32), primary_key=True),
    sa.Column("code_hash", sa.String(128), nullable=False),
    sa.Column("principal", sa.String(128), nullable=False),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("review_round", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
)
