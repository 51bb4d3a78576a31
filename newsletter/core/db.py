"""Engine and session factories, SQLite pragmas, schema migration, and bulk SQL fast paths."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    URL,
    Connection,
    CursorResult,
    Engine,
    Executable,
    Insert,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError, DatabaseError, DatabaseUnavailable, NewsletterError
from newsletter.core.urls import mask_database_url

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = "newsletter:migrations"
READ_ONLY = "newsletter_read_only"
SAID_MAX = 200  # characters of the driver's message kept in a one-line error

# What the driver says, by SQLite's primary result code or PostgreSQL's SQLSTATE.
_LOCKED = frozenset({5, 6, "55P03", "40P01"})  # SQLITE_BUSY, _LOCKED; lock timeout, deadlock
_FULL = frozenset({13, "53100"})  # SQLITE_FULL, disk_full
# What a database that refuses, is down, unreadable, locked or full raises: `database_error`
# says it on one line.
FAILURES: tuple[type[DBAPIError], ...] = (OperationalError, InterfaceError)


def make_engine(settings: Settings) -> Engine:
    """Create the engine for the configured database, ready for concurrent use."""
    try:
        url = make_url(settings.database_url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a long text
        shown = mask_database_url(settings.database_url)
        raise ConfigError(f"invalid database URL: {shown}") from exc
    if url.get_backend_name() == "sqlite":
        return _make_sqlite_engine(url, settings.sqlite_busy_timeout)
    return create_engine(url, pool_pre_ping=True)


def _make_sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    if url.database and url.database != ":memory:":
        folder = Path(url.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"database {url}: cannot create the folder {folder}: {exc.strerror or exc}"
            ) from None
    engine = create_engine(url, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_conn: Any, _record: Any) -> None:  # the driver's connection
        # Let SQLAlchemy, not pysqlite, open transactions, so BEGIN IMMEDIATE works.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front: avoids SQLITE_BUSY on read-then-write
        # upgrades. Readers (read_only_engine) begin deferred and never wait for writers.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN DEFERRED")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def read_only_engine(engine: Engine) -> Engine:
    """Return a view of the engine whose transactions only read: they take no write lock."""
    return engine.execution_options(**{READ_ONLY: True})


def db_now(bind: Connection | Session) -> datetime:
    """Return the database's current time, in UTC: the one clock of every lease and claim.

    On PostgreSQL it is the server's clock, so processes on hosts whose clocks disagree still
    agree on when a lease runs out. SQLite's clock is its host's, the host of every process
    that opens the file.
    """
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    if engine.dialect.name == "postgresql":
        now: datetime = bind.execute(text("SELECT clock_timestamp()")).scalar_one()
        return now.astimezone(UTC)
    value = bind.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def database_error(exc: DBAPIError, detail: str = "", *, where: str = "") -> NewsletterError:
    """Turn a refusal of the database into one line: what happened, `detail`, what to do.

    A refusal that is neither a lock nor a full disk (refused, down, unreadable) names the
    database `where` (its URL, password masked) when given, with the driver's reason.
    """
    orig = exc.orig
    said = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:SAID_MAX]
    code = getattr(orig, "sqlstate", None) or (getattr(orig, "sqlite_errorcode", 0) & 0xFF)
    if code in _LOCKED:
        what, advice = "the database is locked by another process", "try again once it is free"
    elif code in _FULL:
        what, advice = "the database or its disk is full", "free space, then try again"
    elif where:
        return DatabaseUnavailable(f"database {where}: {said}")
    else:
        what, advice = "the database refused the operation", "check that it is reachable"
    detail = f"; {detail}" if detail else ""
    return DatabaseError(f"{what} ({said}){detail}: {advice}")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to the engine."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session inside one transaction: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


def execute_dml(session: Session, statement: Executable) -> CursorResult[Any]:
    """Run an INSERT, UPDATE or DELETE in the session; its result counts the rows changed."""
    # Session.execute is typed to return a plain Result for every statement; for these it
    # returns a CursorResult, which has the rowcount.
    return cast(CursorResult[Any], session.execute(statement))


def dialect_insert(session: Session, table: Any) -> Any:
    """Return the database's own INSERT into table, which can say what a conflict does
    (`on_conflict_do_nothing`, `on_conflict_do_update`: one API on both databases)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    # only SQLite and PostgreSQL are supported
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def insert_or_ignore(session: Session, table: Any) -> Insert:
    """Return an INSERT into table that skips rows conflicting with a unique key."""
    insert: Insert = dialect_insert(session, table).on_conflict_do_nothing()
    return insert


def driver_values(session: Session, table: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Convert values to what the driver expects, as SQLAlchemy would for each row."""
    dialect = session.get_bind().dialect
    out = {}
    for key, value in values.items():
        process = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        out[key] = process(value) if process and value is not None else value
    return out



def select_in(session: Session, sql: str, values: list[Any]) -> list[tuple[Any, ...]]:
    """Run a query whose `{}` is a list of placeholders, one per value."""
    # Plain placeholders: SQLAlchemy's expanding IN renders thousands of values slowly.
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    query = sql.format(", ".join([mark] * len(values)))
    return [tuple(r) for r in conn.exec_driver_sql(query, tuple(values))]



def insert_many(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """Run an INSERT for many rows of driver-ready values, compiled once."""
    # SQLAlchemy's per-row parameter processing costs more than the database's own work
    # here; the values that need a type conversion are converted once by driver_values.
    conn = session.connection()
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(rows[0]))
    if compiled.positional:
        pick = itemgetter(*(compiled.positiontup or []))
        params: list[Any] = [pick(row) for row in rows]
    else:
        params = rows
    conn.exec_driver_sql(str(compiled), params)


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    """Return the newest migration revision shipped with the package."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return MigrationContext.configure(conn).get_current_revision()


def schema_state(engine: Engine) -> tuple[str | None, str | None]:
    """Return the database's revision and the newest shipped; DatabaseUnavailable naming the
    kind of failure when the database does not answer."""
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"database unreachable: {type(exc).__name__}") from exc
    return current, head_revision(engine)


def migrate(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to the newest revision; return the revisions before and after."""
    before = current_revision(engine)
    upgrade(engine)
    return before, current_revision(engine)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to the given revision."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def ensure_schema(engine: Engine) -> bool:
    """Bring the schema to head if it is behind; return True when it migrated."""
    if current_revision(engine) == head_revision(engine):
        return False
    log.info("database schema is behind: migrating to the newest revision")
    upgrade(engine)
    return True
