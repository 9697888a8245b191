"""`govflow db harden` (DESIGN invariant 13): on PostgreSQL no application role can rewrite the audit trail."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pgerr
from psycopg import sql
from psycopg.sql import Identifier as _ident
from sqlalchemy.engine import make_url

from registry import Policy, Registry
from registry.db import Database
from registry.db.harden import SQLITE_REFUSAL, harden
from registry.db.migrate import HEAD
from registry.db.tables import metadata
from registry.errors import InvalidInput, Refused
from tests.fixtures.backends import create_pg_database, drop_pg_database

HOSTILE = 'app%s"; DROP TABLE audit_events; --'


def _as(url: str, role: str) -> str:
    """The SQLAlchemy URL of ``url`` with another user (trust auth, no password)."""
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def _conninfo(url: str) -> str:
    """A psycopg conninfo for a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    url = create_pg_database(pg_server)
    try:
        yield url
    finally:
        drop_pg_database(pg_server, url)


@pytest.fixture
def roles(pg_server: str, pg_url: str) -> Iterator[Callable[..., str]]:
    """Create uniquely named LOGIN roles (cluster-wide), dropped at the end."""
    made: list[str] = []

    def make(prefix: str = "app", options: str = "LOGIN") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} " + options).format(_ident(name)))
        made.append(name)
        return name

    yield make
    with psycopg.connect(_conninfo(pg_url), autocommit=True) as conn:
        for name in made:
            # Hand back anything it owns (the database in the owner test), then drop its grants.
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO postgres").format(_ident(name)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(_ident(name)))
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(_ident(name)))


def _registry(url: str, tmp_path: Path) -> Registry:
    return Registry(url=url, artifact_root=str(tmp_path / "artifacts"), policy=Policy())


def _create_schema(url: str, tmp_path: Path) -> None:
    _registry(url, tmp_path).close()


def _model(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / f"model-{uuid.uuid4().hex[:6]}.bin"
    path.write_bytes(content)
    return path


def _denied(url: str, statement: str, error: type[Exception], match: str, setup: str | None = None) -> None:
    """Run ``setup`` then ``statement`` in one transaction as the URL's user; it must fail with ``error``."""
    with psycopg.connect(_conninfo(url)) as conn:
        if setup:
            conn.execute(setup)
        with pytest.raises(error, match=match):
            conn.execute(statement)
        conn.rollback()  # nothing of the attempt remains, setup included


def _head(url: str) -> tuple[int, str]:
    with psycopg.connect(_conninfo(url)) as conn:
        row = conn.execute("SELECT seq, hash FROM public.audit_head WHERE id = 1").fetchone()
    assert row is not None
    return row[0], row[1]


def _govflow_triggers(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(_conninfo(url)) as conn:
        return conn.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgname LIKE 'govflow%' ORDER BY 1, 2"
        ).fetchall()


def _table_privileges(url: str, role: str) -> dict[str, set[str]]:
    names = [t.name for t in metadata.sorted_tables] + ["alembic_version"]
    kinds = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
    out: dict[str, set[str]] = {name: set() for name in names}
    with psycopg.connect(_conninfo(url)) as conn:
        for name, kind in conn.execute(
            "SELECT t, k FROM unnest(%s::text[]) t, unnest(%s::text[]) k "
            "WHERE has_table_privilege(%s, 'public.' || quote_ident(t), k)",
            (names, kinds, role),
        ):
            out[name].add(kind)
    return out


def _admin(url: str, statement: sql.Composable | str) -> None:
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute(statement)


def test_app_role_runs_the_lifecycle_but_cannot_rewrite_history(pg_url: str, roles, tmp_path: Path) -> None:
    _create_schema(pg_url, tmp_path)
    app = roles("app")
    applied = harden(pg_url, app)
    assert f'GRANT SELECT, INSERT ON TABLE "public"."audit_events" TO "{app}"' in applied
    app_url = _as(pg_url, app)

    reg = _registry(app_url, tmp_path)
    reg.register("churn", _model(tmp_path, b"v1"), actor="alice", metrics={"auc": 0.8})
    reg.transition("churn", 1, "staging", actor="alice")
    reg.approve("churn", 1, actor="bob", reason="fine")
    reg.transition("churn", 1, "production", actor="carol")
    reg.register("churn", _model(tmp_path, b"v2"), actor="alice", metrics={"auc": 0.9})
    reg.transition("churn", 2, "staging", actor="alice")
    reg.approve("churn", 2, actor="bob")
    reg.transition("churn", 2, "production", actor="carol")
    assert reg.rollback("churn", reason="drift", actor="ops").restored == 1
    reg.add_evidence("churn", 1, gate="auc", passed=True, value=0.8, threshold=0.7, actor="ci")
    reg.set_alias("churn", "champion", 1, actor="alice")
    reg.remove_alias("churn", "champion", actor="alice")
    before = reg.verify_audit()
    assert before.ok and before.events >= 10, before
    assert {e.db_user for e in reg.audit_log()} == {app}
    seq, head_hash = _head(pg_url)
    with psycopg.connect(_conninfo(pg_url)) as conn:
        tail_prev = conn.execute("SELECT prev_hash FROM audit_events WHERE seq = %s", (seq,)).fetchone()[0]

    grants, guard = pgerr.InsufficientPrivilege, pgerr.RestrictViolation
    on_events, on_head = "permission denied for table audit_events", "permission denied for table audit_head"
    forged = "f" * 64
    guard_function = (
        "CREATE OR REPLACE FUNCTION public.govflow_audit_head_guard() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$"
    )
    attacks = [
        ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1", grants, on_events),
        (f"DELETE FROM audit_events WHERE seq = {seq}", grants, on_events),
        ("TRUNCATE audit_events", grants, on_events),
        # Hide a tail: move the head back one event.
        (
            f"UPDATE public.audit_head SET seq = seq - 1, hash = '{tail_prev}'",
            guard,
            "audit_head may only advance",
        ),
        (f"UPDATE public.audit_head SET hash = '{forged}'", guard, "audit_events is append-only"),
        (
            f"UPDATE public.audit_head SET seq = seq + 1, hash = '{forged}'",
            guard,
            "audit_events is append-only",
        ),
        ("DELETE FROM public.audit_head", grants, on_head),
        (f"INSERT INTO public.audit_head VALUES (2, 0, '{forged}')", grants, on_head),
        ("ALTER TABLE audit_events DISABLE TRIGGER ALL", grants, "must be owner of table audit_events"),
        (
            "ALTER TABLE audit_head DISABLE TRIGGER govflow_head_guard",
            grants,
            "must be owner of table audit_head",
        ),
        (
            "DROP TRIGGER govflow_append_only ON audit_events",
            grants,
            "must be owner of relation audit_events",
        ),
        (guard_function, grants, "must be owner of function|permission denied for schema public"),
        ("SET session_replication_role = replica", grants, "permission denied to set parameter"),
    ]
    for statement, error, match in attacks:
        _denied(app_url, statement, error, match)
    # A temporary table named audit_events must not stand in for the real one in the guard.
    _denied(
        app_url,
        f"UPDATE public.audit_head SET seq = seq + 1, hash = '{forged}'",
        guard,
        "audit_head may only advance",
        setup=(
            "CREATE TEMP TABLE audit_events (seq int, hash text, prev_hash text); "
            f"INSERT INTO audit_events VALUES ({seq + 1}, '{forged}', '{head_hash}')"
        ),
    )

    assert _head(pg_url) == (seq, head_hash)
    after = reg.verify_audit()
    assert after.ok and after.events == before.events
    reg.close()


def test_broad_grants_are_still_denied_by_the_triggers(pg_url: str, roles, tmp_path: Path) -> None:
    owner = _registry(pg_url, tmp_path)
    owner.register("churn", _model(tmp_path, b"v1"), actor="alice")
    owner.add_evidence("churn", 1, gate="auc", passed=True, actor="ci")
    harden(pg_url, roles("app"))
    # A misconfiguration after hardening: a role granted DML (and TRUNCATE) on every table.
    dml = roles("dml")
    _admin(
        pg_url,
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO {}").format(
            _ident(dml)
        ),
    )
    dml_url = _as(pg_url, dml)
    seq, head_hash = _head(pg_url)
    guarded = [
        ("UPDATE audit_events SET actor = 'mallory'", "audit_events is append-only: UPDATE on audit_events"),
        ("DELETE FROM audit_events", "audit_events is append-only: DELETE on audit_events"),
        ("TRUNCATE audit_events", "audit_events is append-only: TRUNCATE on audit_events"),
        ("TRUNCATE audit_head", "audit_events is append-only: TRUNCATE on audit_head"),
        ("UPDATE audit_head SET seq = seq - 1", rf"next appended event \(seq {seq} -> {seq - 1} refused"),
        ("UPDATE audit_head SET seq = 0, hash = repeat('0', 64)", "audit_head may only advance"),
        ("DELETE FROM audit_head", "the audit_head row cannot be deleted"),
        ("INSERT INTO audit_head VALUES (2, 0, repeat('0', 64))", "audit_head already has its row"),
    ]
    for url in (dml_url, pg_url):  # the broad role, and the owner too: the triggers fire for everyone
        for statement, match in guarded:
            _denied(url, statement, pgerr.RestrictViolation, match)
        # Skipping ahead onto an event inserted out of order is refused too.
        _denied(
            url,
            f"UPDATE audit_head SET seq = {seq + 5}, hash = repeat('e', 64)",
            pgerr.RestrictViolation,
            rf"\(seq {seq} -> {seq + 5} refused",
            setup=(
                "INSERT INTO audit_events (seq, at, actor, action, payload, prev_hash, hash) "
                f"VALUES ({seq + 5}, now(), 'mallory', 'custom.x', '{{}}', '{head_hash}', repeat('e', 64))"
            ),
        )
    assert _head(pg_url) == (seq, head_hash)
    # Appending through the registry still moves the head forward.
    owner.set_alias("churn", "champion", 1, actor="alice")
    assert _head(pg_url)[0] == seq + 1
    assert owner.verify_audit().ok
    owner.close()


def test_harden_twice_grants_exactly_what_is_needed_and_owner_still_migrates(
    pg_url: str, roles, tmp_path: Path
) -> None:
    _create_schema(pg_url, tmp_path)
    app = roles("app")
    # Privileges the role should not keep: harden starts every table from nothing.
    _admin(pg_url, sql.SQL("GRANT ALL ON audit_events, audit_head, versions TO {}").format(_ident(app)))
    first = harden(pg_url, app)
    assert harden(pg_url, app) == first
    db = Database(pg_url)
    assert harden(db, app) == first
    assert db.db_user == "postgres"  # the caller's Database stays open
    db.dispose()
    triggers = _govflow_triggers(pg_url)
    assert sorted(triggers) == [
        ("audit_events", "govflow_append_only"),
        ("audit_events", "govflow_no_truncate"),
        ("audit_head", "govflow_head_guard"),
        ("audit_head", "govflow_no_truncate"),
    ]
    state = {"SELECT", "INSERT", "UPDATE", "DELETE"}
    expected = {t.name: state for t in metadata.sorted_tables}
    expected.update(
        audit_events={"SELECT", "INSERT"}, audit_head={"SELECT", "UPDATE"}, alembic_version={"SELECT"}
    )
    assert _table_privileges(pg_url, app) == expected
    with psycopg.connect(_conninfo(pg_url)) as conn:
        seqs = conn.execute(
            "SELECT c.oid::regclass::text, has_sequence_privilege(%s, c.oid, 'USAGE') FROM pg_class c "
            "WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace",
            (app,),
        ).fetchall()
    assert seqs and all(ok for _, ok in seqs), seqs

    # The owner still opens the registry, migrates and changes the schema.
    owner = _registry(pg_url, tmp_path)
    assert owner.upgrade() == (HEAD, HEAD)
    with psycopg.connect(_conninfo(pg_url)) as conn:
        conn.execute("ALTER TABLE audit_events ADD COLUMN note text")
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER govflow_append_only")
        conn.rollback()
    owner.close()
    reg = _registry(_as(pg_url, app), tmp_path)
    reg.register("churn", _model(tmp_path, b"v1"), actor="alice")
    assert reg.verify_audit().ok
    reg.close()


def test_refuses_roles_that_could_undo_it(pg_url: str, roles, tmp_path: Path) -> None:
    with pytest.raises(Refused, match="run `govflow db upgrade` first"):
        harden(pg_url, roles("app"))  # no schema yet
    _create_schema(pg_url, tmp_path)
    cases = [
        (HOSTILE, "does not exist"),
        ("app\nx", "not a PostgreSQL role name"),
        ("app\u200bx", "not a PostgreSQL role name"),
        ("", "not a PostgreSQL role name"),
        (" app", "not a PostgreSQL role name"),
        ("a" * 64, "not a PostgreSQL role name"),
        ("pg_write_all_data", "predefined role"),
        ("postgres", "is a superuser"),
        (roles("creator", "LOGIN CREATEROLE"), "has CREATEROLE"),
    ]
    for name, match in cases:
        with pytest.raises(InvalidInput, match=match) as info:
            harden(pg_url, name)
        assert info.value.field == "app_role"
        assert "\n" not in str(info.value)
    assert _govflow_triggers(pg_url) == []
    with psycopg.connect(_conninfo(pg_url)) as conn:
        assert conn.execute("SELECT to_regclass('public.audit_events') IS NOT NULL").fetchone()[0]


def test_hostile_role_name_is_quoted_not_executed(pg_url: str, roles, tmp_path: Path) -> None:
    _create_schema(pg_url, tmp_path)
    hostile = roles(HOSTILE)
    applied = harden(pg_url, hostile)
    quoted = '"' + hostile.replace('"', '""') + '"'
    assert f'GRANT SELECT, INSERT ON TABLE "public"."audit_events" TO {quoted}' in applied
    assert _table_privileges(pg_url, hostile)["audit_events"] == {"SELECT", "INSERT"}
    reg = _registry(_as(pg_url, hostile), tmp_path)  # the table is still there, and usable
    reg.register("churn", _model(tmp_path, b"v1"), actor="alice")
    assert reg.verify_audit().ok
    reg.close()


def test_owner_roles_are_refused_and_a_plain_owner_can_harden(
    pg_server: str, pg_url: str, roles, tmp_path: Path
) -> None:
    owner = roles("owner")
    with psycopg.connect(pg_server, autocommit=True) as conn:
        db = make_url(pg_url).database
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(_ident(db), _ident(owner)))
    owner_url = _as(pg_url, owner)
    _create_schema(owner_url, tmp_path)  # a non-superuser owns the schema, as in production
    with pytest.raises(InvalidInput, match="owner of the govflow tables") as info:
        harden(owner_url, owner)
    assert info.value.field == "app_role"
    member = roles("member")
    _admin(pg_server, sql.SQL("GRANT {} TO {}").format(_ident(owner), _ident(member)))
    with pytest.raises(InvalidInput, match="can become"):
        harden(owner_url, member)
    app = roles("app")
    with pytest.raises(Refused, match="run it as their owner"):
        harden(_as(pg_url, app), app)
    assert _govflow_triggers(pg_url) == []

    harden(owner_url, app)
    reg = _registry(_as(pg_url, app), tmp_path)
    reg.register("churn", _model(tmp_path, b"v1"), actor="alice")
    assert reg.verify_audit().ok
    reg.close()
    _denied(
        _as(pg_url, app), "ALTER TABLE audit_events DISABLE TRIGGER ALL", pgerr.InsufficientPrivilege, "owner"
    )
    _denied(owner_url, "DELETE FROM audit_events", pgerr.RestrictViolation, "audit_events is append-only")


WRITER = """
import sys, time
from pathlib import Path
from registry import Policy, Registry
reg = Registry(url=sys.argv[1], artifact_root=sys.argv[2], policy=Policy())
stop, deadline, count = Path(sys.argv[3]), time.monotonic() + 60, 0
while not stop.exists() and time.monotonic() < deadline:
    reg.add_evidence("churn", 1, gate=f"g{count}", passed=True, actor="ci")
    count += 1
    if count == 1:
        print("started", flush=True)
print(count, flush=True)
reg.close()
"""


def test_harden_while_the_application_writes(pg_url: str, roles, tmp_path: Path) -> None:
    owner = _registry(pg_url, tmp_path)
    owner.register("churn", _model(tmp_path, b"v1"), actor="alice")
    stop = tmp_path / "stop"
    args = [sys.executable, "-c", WRITER, pg_url, str(tmp_path / "artifacts"), str(stop)]
    writer = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "started"
        harden(pg_url, roles("app"))  # waits for in-flight writers; new ones queue behind it
        hardened_at = _head(pg_url)[0]
        deadline = time.monotonic() + 30
        while _head(pg_url)[0] < hardened_at + 20:  # the writer goes on appending through the triggers
            assert writer.poll() is None and time.monotonic() < deadline, (
                writer.stderr.read() if writer.stderr else ""
            )
            time.sleep(0.05)
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    report = owner.verify_audit()
    # The seeded policy and the first registration, then the writer's events.
    assert report.ok and report.events == 2 + int(out.split()[-1]), report
    owner.close()


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOVFLOW_REGISTRY_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "govflow", "db", "harden", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_dry_run_then_apply(pg_url: str, roles, tmp_path: Path) -> None:
    _create_schema(pg_url, tmp_path)
    app = roles("app")
    grant = f'GRANT SELECT, INSERT ON TABLE "public"."audit_events" TO "{app}";'

    dry = _cli(pg_url, "--app-role", app, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert grant in dry.stdout and "nothing applied" in dry.stdout
    assert _table_privileges(pg_url, app)["audit_events"] == set()
    assert _govflow_triggers(pg_url) == []

    done = _cli(pg_url, "--app-role", app)
    assert done.returncode == 0, done.stderr
    assert grant in done.stdout and "CREATE OR REPLACE TRIGGER govflow_head_guard" in done.stdout
    assert f"audit trail append-only for role '{app}'" in done.stdout
    assert _table_privileges(pg_url, app)["audit_events"] == {"SELECT", "INSERT"}
    assert len(_govflow_triggers(pg_url)) == 4

    bad = _cli(pg_url, "--app-role", HOSTILE)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: app_role: role {HOSTILE!r} does not exist; create it first"
    ]


def test_cli_refuses_sqlite_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "reg"
    proc = _cli(f"sqlite:///{folder / 'registry.db'}", "--app-role", "govflow_app")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {SQLITE_REFUSAL}"]
    assert not folder.exists()  # nothing half-written
