"""``Database.quick`` on both databases: every committed write seen at once (nothing cached), the
column types applied, and on PostgreSQL a pool of its own that survives dropped connections and
serves waiting readers in turn."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, text, update

from common.database import Database
from common.models.record import Record

pytestmark = pytest.mark.timeout(60)


def _by_owner() -> Any:
    columns = (Record.id, Record.title, Record.tags, Record.pinned, Record.updated_at, Record.deleted_at)
    return select(*columns).where(Record.owner_id == bindparam("owner_id")).order_by(Record.title)


async def _seed(db: Database, owner_id: str, *titles: str) -> None:
    now = datetime.now(UTC)
    async with db.session() as session:
        await session.execute(
            insert(Record),
            [
                {
                    "owner_id": owner_id,
                    "title": t,
                    "tags": ["a", t],
                    "change_seq": n,
                    "created_at": now,
                    "updated_at": now,
                }
                for n, t in enumerate(titles, start=1)
            ],
        )
        await session.commit()


async def _reads_see_every_committed_write(db: Database) -> None:
    owner, other = str(uuid.uuid4()), str(uuid.uuid4())
    await _seed(db, owner, "first", "second")
    await _seed(db, other, "not mine")
    rows = await db.quick.rows("test.by_owner", _by_owner, owner_id=owner)
    assert [r["title"] for r in rows] == ["first", "second"]
    assert rows[0]["tags"] == ["a", "first"]  # JSON decoded
    assert rows[0]["updated_at"].tzinfo is not None and rows[0]["updated_at"].utcoffset().total_seconds() == 0
    assert rows[0]["deleted_at"] is None and rows[0]["pinned"] is False

    async with db.session() as session:
        await session.execute(update(Record).where(Record.owner_id == owner).values(title=Record.title + "!"))
        await session.commit()
    again = await db.quick.rows("test.by_owner", _by_owner, owner_id=owner)
    assert [r["title"] for r in again] == ["first!", "second!"]  # the write, at once: nothing cached


@pytest.fixture
async def postgres_db(reachable_postgres: Any) -> AsyncIterator[Database]:
    if reachable_postgres is None:
        pytest.skip("no PostgreSQL server (TEST_DATABASE_URL or one on 127.0.0.1:5432)")
    url = reachable_postgres.create_database()
    db = Database(url, quick_pool_size=2)
    try:
        await db.create_all()
        yield db
    finally:
        await db.dispose()
        reachable_postgres.drop_database(url)


async def test_quick_reads_on_postgresql_see_every_committed_write(postgres_db: Database) -> None:
    await _reads_see_every_committed_write(postgres_db)
    assert postgres_db.quick.pool_open  # its own pool, not the engine's


async def test_a_quick_read_on_postgresql_survives_its_connections_being_dropped(postgres_db: Database) -> None:
    owner = str(uuid.uuid4())
    await _seed(postgres_db, owner, "kept")
    assert len(await postgres_db.quick.rows("test.by_owner", _by_owner, owner_id=owner)) == 1
    async with postgres_db.engine.connect() as conn:  # as a server restart would
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        await conn.commit()
    rows = await postgres_db.quick.rows("test.by_owner", _by_owner, owner_id=owner)
    assert [r["title"] for r in rows] == ["kept"]


async def test_quick_reads_on_a_sqlite_file_see_every_committed_write(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    try:
        await db.create_all()
        await _reads_see_every_committed_write(db)
    finally:
        await db.dispose()


async def test_quick_reads_on_postgresql_take_turns_when_more_wait_than_there_are_connections(
    postgres_db: Database,
) -> None:
    """More readers than pool connections, each reading again as soon as it has its answer (a
    busy server): every reader is served in turn. asyncpg's pool alone lets a reader that just
    gave its connection back take it again before the reader woken for it runs, so the same two
    readers kept both connections while the others starved (seconds of tail latency under load)."""
    owner = str(uuid.uuid4())
    await _seed(postgres_db, owner, "one")
    readers, rounds = 12, 10
    done = [0] * readers
    first_finished_at: list[list[int]] = []

    async def reader(index: int) -> None:
        for _ in range(rounds):
            await postgres_db.quick.rows("test.by_owner", _by_owner, owner_id=owner)
            done[index] += 1
        if not first_finished_at:
            first_finished_at.append(list(done))

    await asyncio.gather(*(reader(i) for i in range(readers)))
    # When the first reader had all its answers, every other reader had most of its own.
    assert min(first_finished_at[0]) >= rounds - 2, first_finished_at[0]
