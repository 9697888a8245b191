"""``govflow db harden``: make the audit trail append-only for the application's PostgreSQL role."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
import typer

from govflow.cli.audit_cmds import db_app
from registry.config import Settings
from registry.db.harden import harden


@db_app.command("harden")
def db_harden(
    app_role: Annotated[
        str, typer.Option("--app-role", help="The PostgreSQL role the application connects as.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the statements; apply nothing.")] = False,
) -> None:
    """Grant APP_ROLE what govflow needs and make the audit trail append-only (run as the owner).

    Rerun it after every `govflow db upgrade`, so new tables are covered.
    """
    url = Settings.from_env().url
    statements = harden(url, app_role, dry_run=dry_run)
    # Plain print: the statements are meant to be copied, so no markup or wrapping.
    for statement in statements:
        print(f"{statement};")
    safe = sa.engine.make_url(url).render_as_string(hide_password=True)
    if dry_run:
        print(f"-- dry run: {len(statements)} statements for role {app_role!r} on {safe}; nothing applied")
    else:
        print(
            f"-- applied {len(statements)} statements: audit trail append-only for role {app_role!r} on {safe}"
        )
