"""Engine, transactions and schema checks, identical in use on SQLite and PostgreSQL.

Write transactions take the write lock up front: ``BEGIN IMMEDIATE`` on SQLite, and on
PostgreSQL ``SELECT … FOR UPDATE`` on the audit chain head. Every writer therefore queues on the
same lock in the same order, so there are no deadlocks and the audit chain is appended serially.

On PostgreSQL a loopback round trip costs about 0.1 ms, so the hot paths count them: reads run in
autocommit (one round trip per statement, no BEGIN/ROLLBACK), a write sends BEGIN and the lock in
one message, and a pooled connection is pinged only after it sat idle.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from registry.canonical import canonical_text
from registry.errors import GovflowError, InvalidInput, ModelNotFound, StorageError

T = TypeVar("T")
RETRIES = 5
SQLITE_BUSY_MS = 30_000
IDLE_PING_S = 10.0  # a pooled PostgreSQL connection idle longer than this is pinged before use
# One message, one round trip: open the write transaction, take the chain-head lock, read the head.
PG_BEGIN_WRITE = (
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
)
# ``conn.info`` key: the locked chain head (seq, hash), so the first append need not read it again.
CHAIN_HEAD = "govflow_chain_head"


def _is_retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    if code in ("40001", "40P01", "55P03"):  # serialization failure, deadlock, lock not available
        return True
    return "database is locked" in str(exc.orig)


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``; SQLite gets WAL, a busy timeout and explicit BEGINs."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise InvalidInput(f"registry url: {url!r} is not a database URL", field="url") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"registry url: cannot create {folder}: {exc.strerror or exc}") from exc
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_MS / 1000, "isolation_level": None},
            json_serializer=canonical_text,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # fsync on commit: approvals must survive power loss
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("govflow_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if parsed.get_backend_name() == "postgresql":
        return _pg_engine(parsed)
    raise InvalidInput(
        f"registry url: backend {parsed.get_backend_name()!r} is not supported "
        "(use sqlite:/// or postgresql+psycopg://)",
        field="url",
    )


def _pg_engine(parsed: sa.engine.URL, **options: Any) -> Engine:
    # LIFO reuse keeps a few connections warm, with their prepared statements.
    engine = sa.create_engine(
        parsed, pool_size=5, max_overflow=5, pool_use_lifo=True, json_serializer=canonical_text, **options
    )

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # pool_pre_ping would cost a round trip on every call. An idle connection has nothing to
        # read, so a readable socket (the server closed it, or said why) or a long idle gets a ping.
        if dbapi_conn.closed or dbapi_conn.broken:
            raise sa.exc.DisconnectionError("connection closed")
        since = record.info.get("idle_since")
        if since is None:
            return
        if time.monotonic() - since < IDLE_PING_S and not _readable(dbapi_conn):
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc

    return engine


def _readable(dbapi_conn: Any) -> bool:
    try:
        return bool(select.select([dbapi_conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class Database:
    """One registry database: engine, write/read transactions and retry on conflicts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self._pg = self.dialect == "postgresql"
        # PostgreSQL reads and writes run on autocommit connections: reads need no transaction
        # (READ COMMITTED gives each statement its own snapshot anyway), writes open their own.
        # Reads get a pool of their own, so writers queued on the chain lock cannot starve them.
        self._auto = self.engine.execution_options(isolation_level="AUTOCOMMIT") if self._pg else self.engine
        self._reads = _pg_engine(self.engine.url, isolation_level="AUTOCOMMIT") if self._pg else self.engine
        self._db_user: str | None = None
        self._db_user_known = False

    @property
    def db_user(self) -> str | None:
        """The PostgreSQL ``session_user`` (None on SQLite)."""
        if not self._db_user_known:
            if self.dialect == "postgresql":
                with self.read() as conn:
                    self._db_user = conn.execute(sa.text("SELECT session_user")).scalar_one()
            self._db_user_known = True
        return self._db_user

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads.

        SQLite: one read transaction (one WAL snapshot). PostgreSQL: autocommit statements,
        which is what READ COMMITTED gives inside a transaction too, minus BEGIN and COMMIT.
        Readers that need one snapshot across statements use ``snapshot()``.
        """
        if self._pg:
            with self.translate(), self._reads.connect() as conn:
                yield conn
            return
        with self.translate(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction whose every statement sees one snapshot.

        PostgreSQL's default READ COMMITTED lets each statement see newer commits, so a reader
        of the events and then of the chain head could see two different states; REPEATABLE
        READ fixes one snapshot for the whole transaction. SQLite's read transaction already
        does (WAL).
        """
        with self.translate(), self.engine.connect() as conn:
            if self._pg:
                # One BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY, no separate SET TRANSACTION.
                conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    @contextmanager
    def lookup(self) -> Iterator[Connection]:
        """A connection for a single-statement read (autocommit on PostgreSQL)."""
        with self.translate(), self._reads.connect() as conn:
            yield conn

    def transact(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, holding the write lock from the start.

        A serialization failure, deadlock or lock timeout is retried in a fresh transaction; any
        other error rolls everything back and propagates.
        """
        for attempt in range(RETRIES):
            try:
                if self._pg:
                    return self._pg_transact(work)
                with (
                    self.translate(retry=True),
                    self.engine.connect().execution_options(govflow_write=True) as conn,
                    conn.begin(),
                ):
                    return work(conn)
            except _Retry:
                if attempt == RETRIES - 1:
                    raise StorageError(
                        f"registry {self.safe_url}: write conflict persisted after {RETRIES} tries"
                    ) from None
                time.sleep(0.01 * (2**attempt))
        raise AssertionError("unreachable")

    def _pg_transact(self, work: Callable[[Connection], T]) -> T:
        # The connection is in autocommit, so the transaction is ours: BEGIN with the lock, then
        # COMMIT, or ROLLBACK on any error (the pool's reset would too; this keeps it explicit).
        with self.translate(retry=True), self._auto.connect() as conn:
            try:
                conn.info[CHAIN_HEAD] = self._begin_write(conn)
                result = work(conn)
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                _rollback_quietly(conn)
                raise
            finally:
                conn.info.pop(CHAIN_HEAD, None)  # info outlives the checkout
            return result

    def _begin_write(self, conn: Connection) -> tuple[int, str]:
        # Sent on the driver connection: SQLAlchemy would close the cursor on BEGIN's empty result
        # before the SELECT's row could be read. Driver errors are wrapped as SQLAlchemy's would be.
        raw = conn.connection.driver_connection
        try:
            with raw.cursor() as cur:
                cur.execute(PG_BEGIN_WRITE)
                cur.nextset()
                row = cur.fetchone()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            if raw.closed or raw.broken:
                # Nothing was done yet, so a dead connection is safe to replace and retry.
                conn.invalidate()
                raise _Retry() from exc
            raise DBAPIError.instance(
                PG_BEGIN_WRITE,
                None,
                exc,
                self.engine.dialect.loaded_dbapi.Error,
                connection_invalidated=bool(raw.closed or raw.broken),
            ) from exc
        if row is None:
            raise StorageError(f"registry {self.safe_url}: the audit chain head row is missing")
        return int(row[0]), str(row[1])

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def location(self) -> str:
        """Where this registry lives, for a person: a SQLite file's absolute path, else the URL
        without its password."""
        url = self.engine.url
        if self.dialect == "sqlite":
            database = url.database
            return str(Path(database).resolve()) if database and database != ":memory:" else "in-memory SQLite"
        return url._replace(password=None).render_as_string(hide_password=False)  # URL.set ignores None

    @contextmanager
    def translate(self, retry: bool = False) -> Iterator[None]:
        try:
            yield
        except ModelNotFound as exc:
            # A typo should say which registry was read (a wrong GOVFLOW_REGISTRY_URL looks the same).
            if exc.registry is None:
                exc.registry = self.location
            raise
        except GovflowError:
            raise
        except DBAPIError as exc:
            if retry and _is_retryable(exc):
                raise _Retry() from exc
            raise StorageError(f"registry {self.safe_url}: {_first_line(exc)}") from exc
        except (OperationalError, SQLAlchemyError) as exc:
            raise StorageError(f"registry {self.safe_url}: {_first_line(exc)}") from exc

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
        if self._reads is not self.engine:
            self._reads.dispose()


class _Retry(Exception):
    """Internal: the transaction hit a transient conflict and should be run again."""


def _rollback_quietly(conn: Connection) -> None:
    # A lost connection cannot roll back; the server drops its transaction with it.
    try:
        if not conn.invalidated:
            conn.exec_driver_sql("ROLLBACK")
    except SQLAlchemyError:
        pass


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
