"""Async SQLAlchemy 2 database layer shared by every service (SPEC §3).

- ``Base``: declarative base; every table gets a UUID string ``id`` (a Python-side default for
  bulk inserts, plus a ``before_insert`` event for objects built with ``id=None``).
- ``UTCDateTime``: the one place where datetimes are normalised to aware UTC (SQLite returns
  naive values even for ``timezone=True``).
- ``Database``: engine + session factory. SQLite runs with WAL, foreign keys, a busy timeout and
  ``synchronous=NORMAL``; each process uses ONE connection to the file, which serialises its
  writers (measured: pooled writers collide, p99 0.9 s at 16 clients vs 31 ms with one writer).
- ``create_all`` takes a lock (a file lock on SQLite, an advisory lock on PostgreSQL) so that
  five services starting at once on an empty database do not race.
"""

from __future__ import annotations

import asyncio
import fcntl
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, String, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column
from sqlalchemy.types import TypeDecorator

SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_SCHEMA_LOCK_ID = 0x5EC0_2D01


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


def build_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the async engine with the connection policy of this project."""
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **kwargs,
        )
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **kwargs)


class Database:
    """Owns one engine and its session factory; opened and closed by the app's lifespan."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = build_engine(url, **engine_kwargs)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

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
        await self.engine.dispose()


def _acquire_file_lock(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open(path, "a+")  # noqa: SIM115  (held until create_all finishes)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd
