"""Reads that run on the event loop (common.database) never stall it on a locked database:
they meet the lock within a few ms and wait for it in a worker thread instead."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, bindparam, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from common.database import QuickReader, _inline_sqlite_creator

ITEMS = Table("items", MetaData(), Column("x", Integer, primary_key=True))


def _locked_for_a_while(path: Path, seconds: float, *, wal: bool) -> threading.Event:
    """Another writer holding an exclusive lock on ``path``, released after ``seconds``."""
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if wal:  # the only lock that shuts WAL readers out
        locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("INSERT INTO items VALUES (2)")
    released = threading.Event()

    def release() -> None:
        locker.execute("COMMIT")
        locker.close()
        released.set()

    threading.Timer(seconds, release).start()
    return released


async def _ticks_while(awaitable: Any) -> tuple[Any, int]:
    """The awaitable's result and how often the event loop ran another task meanwhile."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        result = await awaitable
    finally:
        done = True
        await task
    return result, ticks


def _make(path: Path, *, wal: bool) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE items (x INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO items VALUES (1)")
    conn.close()


async def test_inline_read_on_a_locked_database_waits_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "inline.db"
    _make(path, wal=False)
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        async_creator=_inline_sqlite_creator(str(path), 10.0),
        pool_size=1,
        max_overflow=0,
    )
    try:
        async with engine.connect() as conn:  # connected and warmed up before the lock
            assert (await conn.execute(text("SELECT x FROM items"))).scalars().all() == [1]
            await conn.rollback()
            released = _locked_for_a_while(path, 0.5, wal=False)
            result, ticks = await _ticks_while(conn.execute(select(ITEMS.c.x).order_by(ITEMS.c.x)))
            assert released.is_set()
            assert result.scalars().all() == [1, 2]  # it waited for the writer, then read
            assert ticks >= 5  # ...while the event loop went on serving others
    finally:
        await engine.dispose()


async def test_quick_reader_on_a_locked_database_waits_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "quick.db"
    _make(path, wal=True)
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    reader = QuickReader(engine, path)
    try:
        released = _locked_for_a_while(path, 0.5, wal=True)

        def build() -> Any:
            return select(ITEMS.c.x).where(ITEMS.c.x >= bindparam("least")).order_by(ITEMS.c.x)

        rows, ticks = await _ticks_while(reader.rows("items_from", build, least=1))
        assert released.is_set()
        assert [row["x"] for row in rows] == [1, 2]
        assert ticks >= 5
        assert [row["x"] for row in await reader.rows("items_from", build, least=2)] == [2]  # inline again
    finally:
        reader.close()
        await engine.dispose()
