"""The records list (the mobile app's home screen) reads a page in index order on SQLite: no
sort of the owner's records, also when many share one ``updated_at`` (an import's), and those
come back newest first, then by id descending, each once across the pages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from common.database import Database
from common.models.record import Record
from mobile_service.app import crud


async def _seed_one_instant(db: Database, owner: str, count: int) -> list[str]:
    instant = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    async with db.session() as session:
        await session.execute(
            insert(Record),
            [
                {
                    "id": record_id,
                    "owner_id": owner,
                    "title": f"imported {n}",
                    "pinned": n % 2 == 0,
                    "change_seq": n + 1,
                    "created_at": instant,
                    "updated_at": instant,
                }
                for n, record_id in enumerate(ids)
            ],
        )
        await session.commit()
    return ids


@pytest.mark.parametrize("pinned", [False, True])
async def test_a_page_is_read_in_index_order_without_a_sort(sqlite_database: Database, pinned: bool) -> None:
    db = sqlite_database
    statement = crud._live_page_statement("-updated_at", pinned, tagged=False)()
    sql = str(statement.compile(dialect=db.engine.dialect))
    params = ["owner", *(["1"] if pinned else []), "owner", *(["1"] if pinned else []), 20, 0]
    async with db.engine.connect() as conn:
        plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", tuple(params))).all()
    steps = [row[-1] for row in plan]
    assert not any("TEMP B-TREE" in step for step in steps), steps
    assert any("ix_records_owner" in step for step in steps), steps


async def test_records_of_one_instant_page_by_id_each_once(sqlite_database: Database) -> None:
    db = sqlite_database
    owner, other = str(uuid.uuid4()), str(uuid.uuid4())
    ids = await _seed_one_instant(db, owner, 45)
    await _seed_one_instant(db, other, 5)
    filters = crud.ListFilters(owner_id=owner, tag=None, pinned=None)
    seen: list[str] = []
    for offset in (0, 20, 40):
        page = await crud.list_page(db, filters, offset=offset, limit=20, sort="-updated_at")
        assert page["total_count"] == 45
        seen += [row["id"] for row in page["data"]]
    assert seen == sorted(ids, reverse=True)
