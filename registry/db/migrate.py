"""Schema migrations: Alembic scripts shipped inside the package."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, ProgrammingError

from registry.db.engine import Database
from registry.errors import SchemaOutdated

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The newest revision shipped; a test checks it against the migration scripts, so opening a
# registry need not import Alembic.
HEAD = "0004"


def _config():  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    """The newest migration this code ships, read from the scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with db.lookup() as conn:
        try:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError):
            return None


@contextmanager
def _file_lock(db: Database) -> Iterator[None]:
    # SQLite has no advisory locks; serialize first-time creation across processes with a file lock.
    path = db.engine.url.database
    if db.dialect != "sqlite" or not path or path == ":memory:":
        yield
        return
    with open(Path(path).expanduser().with_suffix(".migrate.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(db: Database) -> tuple[str | None, str | None]:
    """Bring the schema to the newest revision; return (before, after)."""
    with _file_lock(db):
        from alembic import command

        before = current_revision(db)
        cfg = _config()
        with db.translate(), db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return before, current_revision(db)


def ensure_schema(db: Database) -> None:
    """Create the schema in an empty database; refuse one that is behind this code."""
    current = current_revision(db)
    head = HEAD
    if current == head:
        return
    if current is None:
        upgrade(db)
        return
    raise SchemaOutdated(
        f"registry {db.safe_url} is at schema {current}, this code needs {head}: run `govflow db upgrade`"
    )
