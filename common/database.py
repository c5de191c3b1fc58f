"""Async SQLAlchemy 2 database layer shared by every service (docs/api.md §3).

- ``Base``: declarative base; every table gets a UUID string ``id`` (a Python-side default for
  bulk inserts, plus a ``before_insert`` event for objects built with ``id=None``).
- ``UTCDateTime``: the one place where datetimes are normalised to aware UTC (SQLite returns
  naive values even for ``timezone=True``).
- ``Database``: engine + session factory. SQLite runs with WAL, foreign keys, a busy timeout and
  ``synchronous=NORMAL``; each process uses ONE connection to the file, which serialises its
  writers (pooled writers collide on the file lock).
- On SQLite, quick reads skip aiosqlite's worker-thread round trip (``InlineReadConnection``);
  writes and any statement seen to be slow still run in the thread, and an inline read that
  finds the database busy runs again there, so the event loop never waits long on a lock.
  On PostgreSQL they run on a small asyncpg pool of their own (``QuickReader``): one round trip
  per read, none for a ping, a transaction or a reset.
- ``write_scope`` and ``end_read``: the one transaction pattern of every service.
- ``create_all`` takes a lock (a file lock on SQLite, an advisory lock on PostgreSQL) so that
  five services starting at once on an empty database do not race.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
from sqlalchemy import DateTime, String, event, func, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column
from sqlalchemy.types import TypeDecorator

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Reads on the event loop wait at most this long for a lock; a read that finds the database
# busy is run again in the worker thread with the full SQLITE_BUSY_TIMEOUT_MS.
INLINE_BUSY_TIMEOUT_MS = 5
# A statement that once took longer than this inline (CPU time: a long scan) or longer than
# INLINE_SLOW_WALL_SECONDS of wall time (it waited on the disk or a lock) goes to the worker
# thread from then on. The wall limit is generous so a quick read preempted on a busy machine
# is not mistaken for a slow one.
INLINE_SLOW_SECONDS = 0.002
INLINE_SLOW_WALL_SECONDS = 0.02
_SQLITE_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_INLINE_SLOW_SQL_MAX = 2048
logger = logging.getLogger(__name__)
PG_SCHEMA_LOCK_ID = 0x5EC0_2D01
# Connections of the quick-read pool on PostgreSQL, per process (DATABASE_QUICK_POOL_SIZE). A read
# holds one for a round trip plus the wait until the busy event loop reads the answer: at 32
# requests in flight, 4 connections capped a record read at ~1,400 req/s, 16 gave ~1,750.
QUICK_PG_POOL_SIZE = 16


async def end_read(session: AsyncSession) -> None:
    """End a read-only transaction now, giving the connection back before slow work or the
    response: on SQLite each process has ONE connection, and a request that kept it would make
    every other request queue behind it. A commit, not a rollback: loaded objects stay usable
    (a rollback would expire them), and a read-only transaction has nothing to commit."""
    await session.commit()


@asynccontextmanager
async def write_scope(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """The one transaction pattern of every write: the body commits what it keeps; every exit
    (a return, a refusal, an error) then rolls back whatever is left open, so no path holds a
    lock or a connection past the request. Return values must be read before the block ends."""
    try:
        yield session
    finally:
        await session.rollback()


def unindexed(column: Any) -> Any:
    """``column`` as an expression no index serves (valid on SQLite and PostgreSQL): a lookup of a
    few ids keeps its owner in the WHERE clause this way, and SQLite's planner takes the primary
    key instead of scanning every row of the owner (measured: 12–25 ms at 10,000 rows, vs < 1 ms)."""
    return func.coalesce(column, "")


def new_uuid() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime column that always comes back as aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base: UUID string primary key on every model."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)


@event.listens_for(Base, "before_insert", propagate=True)
def _assign_uuid(mapper: Mapper[Any], connection: Any, target: Any) -> None:
    if getattr(target, "id", None) is None:
        target.id = new_uuid()


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class InlineReadConnection(aiosqlite.Connection):
    """aiosqlite's connection, minus the thread round trip for quick reads.

    aiosqlite runs every call (cursor, execute, fetch, close, rollback) in its worker thread and
    wakes the event loop for each result: five thread handoffs for one primary-key read, each far
    dearer than the read itself on a busy machine. Here a ``SELECT`` and the calls that belong to
    it run inline; writes, commits and rollbacks of a real transaction (which may wait on
    another process's lock) stay in the thread. A SELECT that once took longer than
    ``INLINE_SLOW_SECONDS`` of CPU or ``INLINE_SLOW_WALL_SECONDS`` of wall time inline is sent to
    the thread from then on, so the loop is blocked at most once per slow statement shape. Inline
    calls run with a busy timeout of ``INLINE_BUSY_TIMEOUT_MS``; a SELECT that meets a lock
    (SQLITE_BUSY) is run again in the thread, where calls get the full ``SQLITE_BUSY_TIMEOUT_MS``. Calls never overlap: SQLAlchemy awaits
    each one before the next, so the sqlite3 connection is used by one thread at a time.
    """

    _slow_sql: set[str] = set()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inline_cursors: set[int] = set()
        self._inline_sql: dict[int, str] = {}
        self._busy_timeout_ms: int | None = None  # what the connection is set to now

    def _set_busy_timeout(self, conn: sqlite3.Connection, milliseconds: int) -> None:
        # Switched only when the kind of call changes: a run of inline reads pays nothing.
        if self._busy_timeout_ms != milliseconds:
            conn.execute(f"PRAGMA busy_timeout={milliseconds}")
            self._busy_timeout_ms = milliseconds

    def _in_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs in the worker thread: with the full busy timeout (writers may wait their turn)."""
        if self._connection is not None:
            self._set_busy_timeout(self._connection, SQLITE_BUSY_TIMEOUT_MS)
        return fn(*args, **kwargs)

    def _mark_slow(self, sql: str) -> None:
        if len(self._slow_sql) > _INLINE_SLOW_SQL_MAX:
            self._slow_sql.clear()
        self._slow_sql.add(sql)

    def _inline(self, fn: Any, args: tuple[Any, ...]) -> bool:
        name = getattr(fn, "__name__", "")
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, sqlite3.Cursor):
            if name == "execute" and args and isinstance(args[0], str):
                sql = args[0]
                return sql.lstrip()[:6].upper() == "SELECT" and sql not in self._slow_sql
            return name in ("fetchall", "fetchone", "fetchmany", "close") and id(owner) in self._inline_cursors
        if isinstance(owner, sqlite3.Connection):
            if name == "cursor":
                return True
            if name in ("rollback", "commit"):
                return not owner.in_transaction  # nothing to end: no lock, no I/O
        return False

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._inline(fn, args):
            owner = getattr(fn, "__self__", None)
            if getattr(fn, "__name__", "") == "execute" and owner is not None:
                self._inline_cursors.discard(id(owner))
            return await super()._execute(self._in_thread, fn, *args, **kwargs)
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        owner = getattr(fn, "__self__", None)
        name = getattr(fn, "__name__", "")
        self._set_busy_timeout(self._connection, INLINE_BUSY_TIMEOUT_MS)
        started, started_wall = time.thread_time(), time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if name != "execute" or exc.sqlite_errorcode not in _SQLITE_BUSY_CODES:
                raise
            # Locked (a checkpoint, another process's exclusive lock): wait in the thread, not here.
            self._mark_slow(args[0])
            return await super()._execute(self._in_thread, fn, *args, **kwargs)
        elapsed = time.thread_time() - started  # CPU time: a preempted quick read is not a slow one
        elapsed_wall = time.perf_counter() - started_wall  # wall time: it waited on disk or a lock
        if isinstance(owner, sqlite3.Cursor):
            key = id(owner)
            if name == "execute":
                self._inline_cursors.add(key)
                self._inline_sql[key] = args[0]
            elif name == "close":
                self._inline_cursors.discard(key)
                self._inline_sql.pop(key, None)
            if (elapsed > INLINE_SLOW_SECONDS or elapsed_wall > INLINE_SLOW_WALL_SECONDS) and key in self._inline_sql:
                self._mark_slow(self._inline_sql[key])
        elif isinstance(result, sqlite3.Cursor):
            self._inline_cursors.discard(id(result))  # a new cursor may reuse a closed one's id
        return result


def _inline_sqlite_creator(path: str, timeout: float) -> Any:
    async def _connect() -> InlineReadConnection:
        def connector() -> sqlite3.Connection:
            # One connection per process, used by one caller at a time (see InlineReadConnection).
            return sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level="")

        connection = InlineReadConnection(connector, 64)
        connection._thread.daemon = True
        return await connection

    return _connect


def build_engine(url: str, *, inline_reads: bool = True, **kwargs: Any) -> AsyncEngine:
    """Create the async engine with the connection policy of this project.

    ``inline_reads`` (SQLite only): quick reads run on the event loop (see ``InlineReadConnection``).
    """
    # JSON columns (lists of strings) decoded by orjson: a fifth of json.loads' time.
    kwargs.setdefault("json_deserializer", orjson.loads)
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        if inline_reads and url.startswith("sqlite+aiosqlite"):
            kwargs.setdefault("async_creator", _inline_sqlite_creator(str(path) if path else ":memory:", timeout))
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            connect_args={"timeout": timeout},
            **kwargs,
        )
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **kwargs)


@dataclass(frozen=True, slots=True)
class _PreparedRead:
    sql: str
    bind_names: tuple[str, ...]
    bind_processors: dict[str, Any]
    columns: tuple[str, ...]
    result_processors: tuple[tuple[int, Any], ...]  # (column index, processor), converting columns only


class QuickReader:
    """Hot, small reads (a row by key, a page by index) without the async ORM round trip.

    Statements are SQLAlchemy Core built from the models and compiled once per name; values go
    through the column types (``UTCDateTime``, JSON) exactly as the ORM would convert them.

    - SQLite (a file): inline on a read-only connection of their own (WAL: readers never wait
      for writers and see every committed write).
    - PostgreSQL: on an asyncpg pool of their own, in autocommit (one statement is its own
      snapshot: it sees every write committed before it). asyncpg prepares each statement once
      per connection and keeps it. The engine's pool would cost three more round trips per read
      (its pre-ping runs BEGIN, a ping and ROLLBACK) and, past its size, a new connection per
      request; here a connection is never pinged or reset (these connections only ever run one
      SELECT at a time, so there is no session state to clear), and a read that finds its
      connection dropped (a server restart) runs once more on a fresh one.
    - Anything else (in-memory SQLite): through the engine.

    Only for statements that touch a handful of rows by index: on SQLite the event loop runs them.
    """

    def __init__(self, engine: AsyncEngine, sqlite_path: Path | None, *, pool_size: int = QUICK_PG_POOL_SIZE) -> None:
        self.engine = engine
        self._path = sqlite_path
        self._conn: sqlite3.Connection | None = None
        self._prepared: dict[str, _PreparedRead] = {}
        self._statements: dict[str, Any] = {}
        self._pg = engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg"
        self._pool_size = pool_size
        self._pool: Any = None  # asyncpg.Pool, opened by the first read
        self._pool_lock = asyncio.Lock()
        # Readers queue here, in arrival order, so the pool never has a waiter: asyncpg's pool
        # lets a task that just released a connection take it again before the task woken for
        # it runs, and under load a few readers waited seconds (bench/README.md, issue 15).
        self._turns = asyncio.Semaphore(pool_size)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            assert self._path is not None
            # Inline on the event loop: it waits at most INLINE_BUSY_TIMEOUT_MS for a lock.
            self._conn = self._open(INLINE_BUSY_TIMEOUT_MS)
        return self._conn

    def _open(self, busy_timeout_ms: int) -> sqlite3.Connection:
        assert self._path is not None
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        conn.execute("PRAGMA query_only=ON")
        return conn

    @staticmethod
    def _fetch(conn: sqlite3.Connection, sql: str, values: list[Any]) -> list[Any]:
        cursor = conn.execute(sql, values)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    def _fetch_blocking(self, sql: str, values: list[Any]) -> list[Any]:
        """In a worker thread, on a connection of its own with the full busy timeout."""
        conn = self._open(SQLITE_BUSY_TIMEOUT_MS)
        try:
            return self._fetch(conn, sql, values)
        finally:
            conn.close()

    def _prepare(self, name: str, build: Any) -> _PreparedRead:
        prepared = self._prepared.get(name)
        if prepared is None:
            statement = build()
            dialect = self.engine.dialect
            compiled = statement.compile(dialect=dialect)
            columns = tuple(c.key for c in statement.selected_columns)
            processors = [c.type._cached_result_processor(dialect, None) for c in statement.selected_columns]
            prepared = _PreparedRead(
                sql=compiled.string,
                bind_names=tuple(compiled.positiontup or ()),
                bind_processors=dict(compiled._bind_processors),
                columns=columns,
                result_processors=tuple((i, p) for i, p in enumerate(processors) if p is not None),
            )
            self._prepared[name] = prepared
            self._statements[name] = statement
        return prepared

    async def rows(self, name: str, build: Any, **params: Any) -> list[dict[str, Any]]:
        """Rows of the statement ``build()`` makes (compiled once under ``name``), as dicts;
        ``params`` fill its ``bindparam``s."""
        prepared = self._prepare(name, build)
        if self._path is None and not self._pg:
            async with self.engine.connect() as conn:
                result = await conn.execute(self._statements[name], params)
                return [dict(row) for row in result.mappings()]
        values = []
        for bind in prepared.bind_names:
            value = params[bind]
            processor = prepared.bind_processors.get(bind)
            values.append(processor(value) if processor else value)
        if self._pg:
            return self._rows_of(prepared, await self._fetch_pooled(prepared.sql, values))
        try:
            fetched = self._fetch(self._connection(), prepared.sql, values)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode not in _SQLITE_BUSY_CODES:
                raise
            # The file is locked (a checkpoint, another process's exclusive lock): wait for it
            # off the event loop.
            fetched = await asyncio.to_thread(self._fetch_blocking, prepared.sql, values)
        return self._rows_of(prepared, fetched)

    async def _fetch_pooled(self, sql: str, values: list[Any]) -> list[Any]:
        """PostgreSQL: one round trip on the quick pool; once more on a fresh connection when
        the server dropped this one (a read is safe to repeat)."""
        pool = self._pool or await self._open_pool()
        async with self._turns:
            try:
                return await pool.fetch(sql, *values)
            except _pg_connection_lost() as exc:
                logger.warning("quick read: connection lost (%s), retrying on a new one", type(exc).__name__)
                await pool.expire_connections()  # the others went with it (a restart): replace them all
                return await pool.fetch(sql, *values)

    async def _open_pool(self) -> Any:
        import asyncpg

        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=1,
                    max_size=self._pool_size,
                    init=_quick_connection_init,
                    reset=_quick_connection_reset,
                    **_asyncpg_connect_kwargs(self.engine),
                )
        return self._pool

    @property
    def pool_open(self) -> bool:
        """Whether the PostgreSQL quick pool has been opened (by a first read)."""
        return self._pool is not None

    @staticmethod
    def _rows_of(prepared: _PreparedRead, fetched: list[Any]) -> list[dict[str, Any]]:
        columns = prepared.columns
        rows = [dict(zip(columns, tuple(row), strict=True)) for row in fetched]
        for index, processor in prepared.result_processors:  # only the columns that convert
            column = columns[index]
            for row in rows:
                row[column] = processor(row[column])
        return rows

    async def aclose(self) -> None:
        self.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _pg_connection_lost() -> tuple[type[BaseException], ...]:
    """asyncpg's errors for a connection the server (or the network) dropped. The server's
    goodbye may reach an idle connection first and leave its protocol in a state the next query
    refuses (``InternalClientError``): that connection is gone as well."""
    from asyncpg import exceptions

    return (
        exceptions.ConnectionDoesNotExistError,
        exceptions.AdminShutdownError,
        exceptions.CrashShutdownError,
        exceptions.CannotConnectNowError,
        exceptions.InterfaceError,
        exceptions.InternalClientError,
        ConnectionError,
    )


def _asyncpg_connect_kwargs(engine: AsyncEngine) -> dict[str, Any]:
    """``asyncpg.connect`` arguments for the engine's URL, as SQLAlchemy's dialect reads it
    (host, port, user, password, database, ``ssl``...)."""
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs = dict(kwargs)
    if "prepared_statement_cache_size" in kwargs:  # SQLAlchemy's name for asyncpg's option
        kwargs["statement_cache_size"] = int(kwargs.pop("prepared_statement_cache_size"))
    kwargs.pop("prepared_statement_name_func", None)
    return kwargs


async def _quick_connection_init(conn: Any) -> None:
    # JSON as SQLAlchemy's asyncpg dialect sets it up (text in, the bind processors give str),
    # decoded by orjson, which takes the bytes as they come.
    await conn.set_type_codec("json", encoder=str.encode, decoder=orjson.loads, schema="pg_catalog", format="binary")


async def _quick_connection_reset(conn: Any) -> None:
    """Nothing to reset: quick connections run single SELECTs in autocommit (asyncpg's default
    reset would be one more round trip per read)."""


# Changes to objects that ``create_all`` does not alter once they exist (SQLite's search index,
# made by DDL events): each is a function of a sync connection, registered by the model module
# that owns the object, run by ``Database.create_all`` under the schema lock; it must be a no-op
# on an up-to-date database. (PostgreSQL databases change through Alembic revisions only.)
SQLITE_SCHEMA_UPGRADES: list[Callable[[Any], Any]] = []


class Database:
    """Owns one engine and its session factory; opened and closed by the app's lifespan."""

    def __init__(self, url: str, *, quick_pool_size: int = QUICK_PG_POOL_SIZE, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = build_engine(url, **engine_kwargs)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        # In-memory SQLite has no file a second connection could open: reads take the engine.
        sqlite_path = _sqlite_path(url) if url.startswith("sqlite") else None
        self.quick = QuickReader(self.engine, sqlite_path, pool_size=quick_pool_size)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def create_all(self) -> None:
        """Create missing tables, safely when several processes start at once."""
        import common.models  # noqa: F401  (registers every shared model)

        if self.is_sqlite:
            path = _sqlite_path(self.url)
            lock_path = (path.parent if path else Path(tempfile.gettempdir())) / ".schema.lock"
            fd = await asyncio.to_thread(_acquire_file_lock, lock_path)
            try:
                async with self.engine.begin() as conn:
                    await conn.run_sync(Base.metadata.create_all)
                    for upgrade in SQLITE_SCHEMA_UPGRADES:
                        await conn.run_sync(upgrade)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                fd.close()
        else:
            async with self.engine.begin() as conn:
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({PG_SCHEMA_LOCK_ID})"))
                await conn.run_sync(Base.metadata.create_all)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.quick.aclose()
        await self.engine.dispose()


def _acquire_file_lock(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open(path, "a+")  # noqa: SIM115  (held until create_all finishes)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd
