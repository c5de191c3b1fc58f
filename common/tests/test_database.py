"""common.database on a real SQLite file: UUID ids, UTC datetimes, pragmas, concurrent create_all."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, select, text

from common.config import REPO_ROOT
from common.database import Database
from common.models.user import User


@pytest.fixture
def db(sqlite_database: Database) -> Database:
    return sqlite_database


def _user_fields(name: str) -> dict[str, object]:
    return {"username": name, "username_key": name.lower(), "password_hash": "x"}


async def test_insert_event_assigns_a_uuid_when_none_is_given(db: Database) -> None:
    async with db.session() as session:
        user = User(**_user_fields("alice"))
        user.id = None  # type: ignore[assignment]
        session.add(user)
        await session.commit()
        assert uuid.UUID(user.id).version == 4


async def test_a_client_supplied_id_is_kept(db: Database) -> None:
    chosen = str(uuid.uuid4())
    async with db.session() as session:
        session.add(User(id=chosen, **_user_fields("bob")))
        await session.commit()
        assert (await session.get(User, chosen)) is not None


async def test_bulk_insert_gets_uuids_from_the_column_default(db: Database) -> None:
    # ORM bulk insert skips mapper events: the Python-side default must fill the ids.
    async with db.session() as session:
        await session.execute(insert(User), [_user_fields(f"bulk{n}") for n in range(3)])
        await session.execute(insert(User).values(**_user_fields("core")))
        await session.commit()
        ids = (await session.execute(select(User.id))).scalars().all()
    assert len(ids) == 4 and len(set(ids)) == 4
    assert all(uuid.UUID(i).version == 4 for i in ids)


async def test_datetimes_come_back_utc_aware_on_sqlite(db: Database) -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    plus_eight = datetime(2026, 1, 2, 11, 4, 5, tzinfo=timezone(timedelta(hours=8)))
    async with db.session() as session:
        fresh = User(**_user_fields("fresh"))
        naive_user = User(created_at=naive, **_user_fields("naive"))
        offset_user = User(created_at=plus_eight, **_user_fields("offset"))
        session.add_all([fresh, naive_user, offset_user])
        await session.commit()
    async with db.session() as session:
        rows = {u.username: u for u in (await session.execute(select(User))).scalars()}
    for user in rows.values():
        assert user.created_at.tzinfo is not None and user.created_at.utcoffset() == timedelta(0)
    assert rows["naive"].created_at == naive.replace(tzinfo=UTC)  # naive input is taken as UTC
    assert rows["offset"].created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert abs(rows["fresh"].created_at - datetime.now(UTC)) < timedelta(minutes=5)


async def test_updated_at_moves_on_update(db: Database) -> None:
    async with db.session() as session:
        user = User(**_user_fields("mover"))
        session.add(user)
        await session.commit()
        first = user.updated_at
        user.display_name = "Mover"
        await session.commit()
        await session.refresh(user)
        assert user.updated_at >= first and user.updated_at.tzinfo is not None


async def test_sqlite_pragmas_are_set_on_every_connection(db: Database) -> None:
    async with db.engine.connect() as conn:
        values = {
            name: (await conn.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    assert values == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10_000, "synchronous": 1}


async def test_ping_and_a_missing_parent_directory(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'dir' / 'app.db'}")
    try:
        await database.ping()
        await database.create_all()
    finally:
        await database.dispose()
    assert (tmp_path / "nested" / "dir" / "app.db").exists()


CREATE_ALL_SCRIPT = """
import asyncio, sys, time
from common.database import Database

async def main(url: str, start_at: float) -> None:
    db = Database(url)
    time.sleep(max(0.0, start_at - time.time()))  # all five hit the empty file together
    try:
        await db.create_all()
    finally:
        await db.dispose()

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
print("ok")
"""


def test_five_processes_create_tables_at_once_on_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    url = f"sqlite+aiosqlite:///{path}"
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_ALL_SCRIPT, url, str(start_at)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0 and out.strip() == "ok", err[-2000:]

    async def tables() -> list[str]:
        database = Database(url)
        try:
            async with database.engine.connect() as conn:
                return await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        finally:
            await database.dispose()

    assert "users" in asyncio.run(tables())
