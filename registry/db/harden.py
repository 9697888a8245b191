"""Append-only audit on PostgreSQL: grants and triggers so the application cannot rewrite history.

``harden`` is run by the owner of the govflow tables. It gives the application role exactly the
privileges govflow needs (audit rows may be inserted and read, never updated, deleted or
truncated), and installs triggers that refuse audit rewrites for every role, so a broad grant
made later is still denied. The chain head may only advance onto a real appended event, so a
deleted tail can never be hidden by moving it back. Only the owner can alter or disable the
triggers, which is why the application role must be neither the owner nor a superuser.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.db.engine import Database
from registry.db.migrate import HEAD as HEAD_REVISION
from registry.db.tables import audit_events, audit_head, metadata
from registry.errors import InvalidInput, Refused, SchemaOutdated, StorageError, map_exceptions

SQLITE_REFUSAL = "db harden: SQLite has no roles; use PostgreSQL for an append-only audit trail"
APPEND_ONLY_FN = "govflow_audit_append_only"
HEAD_GUARD_FN = "govflow_audit_head_guard"
MIN_SERVER = 140000  # CREATE OR REPLACE TRIGGER keeps reruns idempotent
MAX_NAME_BYTES = 63  # PostgreSQL silently truncates longer identifiers

APPEND = audit_events.name
HEAD = audit_head.name
STATE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
TABLE_PRIVILEGES = {APPEND: "SELECT, INSERT", HEAD: "SELECT, UPDATE", "alembic_version": "SELECT"}


@dataclass(frozen=True)
class Target:
    """What harden works on: the schema, the role and the govflow objects found in the database."""

    schema: str
    role: str
    tables: tuple[str, ...]
    sequences: tuple[tuple[str, str], ...]  # (schema, name)
    needs_schema_usage: bool


def check_role_name(value: str) -> str:
    """Refuse a role name PostgreSQL would mangle or that names a predefined role."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or value != value.strip()
        or len(value.encode("utf-8")) > MAX_NAME_BYTES
        or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)
    ):
        raise InvalidInput(
            f"app_role: {value!r} is not a PostgreSQL role name "
            f"(1 to {MAX_NAME_BYTES} bytes, no control characters or surrounding spaces)",
            field="app_role",
        )
    if value.lower().startswith("pg_") or value.lower() == "public":
        raise InvalidInput(f"app_role: {value!r} is a PostgreSQL predefined role name", field="app_role")
    return value


def harden(db_or_url: Database | str, app_role: str, *, dry_run: bool = False) -> list[str]:
    """Make the audit trail append-only for ``app_role``; return the statements applied.

    Runs in one transaction as the owner of the govflow tables and is safe to run again (after
    every ``govflow db upgrade``, so new tables are covered). With ``dry_run`` it only returns
    the statements. Refuses SQLite, a missing or outdated schema, a role that does not exist,
    is a superuser, can create roles or is (a member of) the tables' owner, and a connection
    that is not the owner.
    """
    if isinstance(db_or_url, str):
        _refuse_sqlite(_backend(db_or_url))
        db = Database(db_or_url)
    else:
        db = db_or_url
        _refuse_sqlite(db.dialect)
    role = check_role_name(app_role)
    try:
        dbapi_error: Any = db.engine.dialect.loaded_dbapi.Error
        errors = {dbapi_error: lambda exc: StorageError(f"db harden: {_first_line(exc)}")}
        with db.translate(), map_exceptions(errors), db.engine.connect() as conn, conn.begin():
            target = _inspect(conn, role)
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            if revision != HEAD_REVISION:
                raise SchemaOutdated(
                    f"registry {db.safe_url} is at schema {revision}, this code needs {HEAD_REVISION}: "
                    "run `govflow db upgrade`"
                )
            statements = plan(target)
            if not dry_run:
                # Wait for in-flight writers (they all lock the head first) and hold new ones off;
                # give up rather than hang behind a stuck transaction.
                conn.execute(sa.text("SET LOCAL lock_timeout = '30s'"))
                head = f"{quote_ident(target.schema)}.{quote_ident(HEAD)}"
                conn.execute(sa.text(f"LOCK TABLE {head} IN EXCLUSIVE MODE"))
                # Raw cursor: the driver would read a '%' in a role name as a placeholder.
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                for statement in statements:
                    cursor.execute(statement)
        return statements
    finally:
        if db is not db_or_url:
            db.dispose()


def _backend(url: str) -> str:
    try:
        return sa.engine.make_url(url).get_backend_name()
    except sa.exc.ArgumentError as exc:
        raise InvalidInput(f"registry url: {url!r} is not a database URL", field="url") from exc


def _refuse_sqlite(backend: str) -> None:
    if backend == "sqlite":
        raise Refused(SQLITE_REFUSAL)
    if backend != "postgresql":
        raise InvalidInput(f"db harden: backend {backend!r} is not supported (use PostgreSQL)", field="url")


def _inspect(conn: Connection, role: str) -> Target:
    """Check the role and the connection, and find the govflow tables and sequences."""
    if int(conn.execute(sa.text("SELECT current_setting('server_version_num')")).scalar_one()) < MIN_SERVER:
        raise Refused("db harden: needs PostgreSQL 14 or newer")
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    _check_role(conn, role)
    wanted = [t.name for t in metadata.sorted_tables] + ["alembic_version"]
    rows = conn.execute(
        sa.text(
            "SELECT c.relname AS name, pg_get_userbyid(c.relowner) AS owner FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :s AND c.relkind IN ('r', 'p') AND c.relname = ANY(:names)"
        ),
        {"s": schema, "names": wanted},
    ).all()
    owners = {r.name: r.owner for r in rows}
    if "alembic_version" not in owners:
        raise Refused(f"db harden: schema {schema} has no govflow tables; run `govflow db upgrade` first")
    missing = [t for t in wanted if t not in owners]
    if missing:
        raise Refused(
            f"db harden: tables missing in schema {schema}: {', '.join(missing)}; run `govflow db upgrade`"
        )
    me = conn.execute(sa.text("SELECT current_user")).scalar_one()
    for owner in sorted(set(owners.values())):
        member = sa.text("SELECT pg_has_role(:r, :o, 'MEMBER')")
        if conn.execute(member, {"r": role, "o": owner}).scalar_one():
            raise InvalidInput(
                f"app_role: {role!r} is or can become {owner!r}, the owner of the govflow tables, "
                "and could disable the triggers; use a separate application role",
                field="app_role",
            )
        if not conn.execute(
            sa.text("SELECT pg_has_role(:r, :o, 'USAGE')"), {"r": me, "o": owner}
        ).scalar_one():
            raise Refused(
                f"db harden: connected as {me!r}, but the govflow tables are owned by {owner!r}; run it as their owner"
            )
    sequences = conn.execute(
        sa.text(
            "SELECT DISTINCT sn.nspname AS schema, s.relname AS name FROM pg_depend d "
            "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "JOIN pg_namespace sn ON sn.oid = s.relnamespace "
            "JOIN pg_class t ON t.oid = d.refobjid "
            "JOIN pg_namespace tn ON tn.oid = t.relnamespace "
            "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
            "AND tn.nspname = :s AND t.relname = ANY(:names) ORDER BY 1, 2"
        ),
        {"s": schema, "names": wanted},
    ).all()
    usage = conn.execute(
        sa.text("SELECT has_schema_privilege(:r, :s, 'USAGE')"), {"r": role, "s": schema}
    ).scalar_one()
    return Target(
        schema=schema,
        role=role,
        tables=tuple(wanted),
        sequences=tuple((r.schema, r.name) for r in sequences),
        needs_schema_usage=not usage,
    )


def _check_role(conn: Connection, role: str) -> None:
    """Refuse a role that does not exist or could undo the hardening itself."""
    found = conn.execute(
        sa.text("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = :r"), {"r": role}
    ).one_or_none()
    if found is None:
        raise InvalidInput(f"app_role: role {role!r} does not exist; create it first", field="app_role")
    if found.rolsuper:
        raise InvalidInput(
            f"app_role: {role!r} is a superuser, which bypasses every grant and can disable triggers",
            field="app_role",
        )
    if found.rolcreaterole:
        raise InvalidInput(
            f"app_role: {role!r} has CREATEROLE and could grant itself the owner's role", field="app_role"
        )


def plan(target: Target) -> list[str]:
    """The statements that harden ``target``, in the order they run."""
    quote = quote_ident
    schema = quote(target.schema)
    role = quote(target.role)

    def table(name: str) -> str:
        return f"{schema}.{quote(name)}"

    out = [f"GRANT USAGE ON SCHEMA {schema} TO {role}"] if target.needs_schema_usage else []
    for name in target.tables:
        # Start from nothing, so the role ends with exactly these privileges on every table.
        out.append(f"REVOKE ALL ON TABLE {table(name)} FROM {role}")
        out.append(f"GRANT {TABLE_PRIVILEGES.get(name, STATE_PRIVILEGES)} ON TABLE {table(name)} TO {role}")
    out.append(f"REVOKE UPDATE, DELETE, TRUNCATE ON TABLE {table(APPEND)} FROM PUBLIC, {role}")
    out.append(f"REVOKE INSERT, DELETE, TRUNCATE ON TABLE {table(HEAD)} FROM PUBLIC, {role}")
    for seq_schema, name in target.sequences:
        sequence = f"{quote(seq_schema)}.{quote(name)}"
        out.append(f"REVOKE ALL ON SEQUENCE {sequence} FROM {role}")
        out.append(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {role}")
    out.extend(_triggers(schema, table(APPEND), table(HEAD)))
    return out


def _triggers(schema: str, events: str, head: str) -> list[str]:
    # Schema-qualified names and a fixed search_path: a temporary table named audit_events must
    # not be able to stand in for the real one inside the guard.
    append_only = f"{schema}.{APPEND_ONLY_FN}"
    guard = f"{schema}.{HEAD_GUARD_FN}"
    header = "RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $govflow$"
    refuse = "RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE ="
    return [
        f"CREATE OR REPLACE FUNCTION {append_only}() {header}\n"
        "BEGIN\n"
        f"  {refuse} 'audit_events is append-only: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' refused';\n"
        "END\n$govflow$",
        f"CREATE OR REPLACE FUNCTION {guard}() {header}\n"
        "BEGIN\n"
        "  IF TG_OP = 'DELETE' THEN\n"
        f"    {refuse} 'audit_events is append-only: the audit_head row cannot be deleted';\n"
        "  END IF;\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    IF EXISTS (SELECT 1 FROM {head}) THEN\n"
        f"      {refuse} 'audit_events is append-only: audit_head already has its row';\n"
        "    END IF;\n"
        "    RETURN NEW;\n"
        "  END IF;\n"
        "  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.seq IS DISTINCT FROM OLD.seq + 1 OR NOT EXISTS (\n"
        f"      SELECT 1 FROM {events} e\n"
        "      WHERE e.seq = NEW.seq AND e.hash = NEW.hash AND e.prev_hash = OLD.hash) THEN\n"
        f"    {refuse} 'audit_events is append-only: audit_head may only advance to the next appended event'\n"
        "      || ' (seq ' || OLD.seq || ' -> ' || coalesce(NEW.seq::text, 'null') || ' refused)';\n"
        "  END IF;\n"
        "  RETURN NEW;\n"
        "END\n$govflow$",
        f"CREATE OR REPLACE TRIGGER govflow_append_only BEFORE UPDATE OR DELETE ON {events} "
        f"FOR EACH ROW EXECUTE FUNCTION {append_only}()",
        f"CREATE OR REPLACE TRIGGER govflow_no_truncate BEFORE TRUNCATE ON {events} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {append_only}()",
        f"CREATE OR REPLACE TRIGGER govflow_no_truncate BEFORE TRUNCATE ON {head} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {append_only}()",
        f"CREATE OR REPLACE TRIGGER govflow_head_guard BEFORE INSERT OR UPDATE OR DELETE ON {head} "
        f"FOR EACH ROW EXECUTE FUNCTION {guard}()",
    ]


def quote_ident(name: str) -> str:
    """A PostgreSQL quoted identifier: a role or schema name is data here, never SQL."""
    # Not the dialect's preparer: it doubles '%' for the driver's placeholders.
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
