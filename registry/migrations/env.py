"""Alembic environment: runs on the connection the registry hands over."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from registry.db.tables import metadata

config = context.config
connection = config.attributes["connection"]

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Concurrent first starts must not both create the schema.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(782341)"))
    context.run_migrations()
