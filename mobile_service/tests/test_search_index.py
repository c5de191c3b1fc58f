"""The SQLite CJK search table (``records_cjk``) never holds a deleted record's text, and a
rebuild refills it from the live records only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from common.database import Database
from common.models.record import _SQLITE_SEARCH_DDL
from mobile_service.app import crud, records
from mobile_service.app.schemas import RecordCreate


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    if not database_url.startswith("sqlite"):
        pytest.skip("the search tables records_search and records_cjk exist on SQLite only")
    database = Database(database_url)
    await database.create_all()
    try:
        yield database
    finally:
        await database.dispose()


async def _cjk_body(db: Database, record_id: str) -> list[str]:
    async with db.session() as session:
        rows = await session.execute(
            text("SELECT body FROM records_cjk WHERE rowid = (SELECT rowid FROM records WHERE id = :id)"),
            {"id": record_id},
        )
        return [row[0] for row in rows]


async def _search(db: Database, owner: str, q: str) -> list[str]:
    async with db.session() as session:
        page = await crud.search_page(session, crud.ListFilters(owner_id=owner), q, offset=0, limit=50)
    return [r.id for r in page["data"]]


async def test_deleted_records_leave_no_text_in_the_cjk_index_even_after_a_rebuild(db: Database) -> None:
    owner = str(uuid.uuid4())
    async with db.session() as session:
        gone = await records.create_record(session, owner, RecordCreate(title="会议", content="秘密的会议纪要"))
    async with db.session() as session:
        kept = await records.create_record(session, owner, RecordCreate(title="周一", content="项目会议"))
    assert await _cjk_body(db, gone.id)
    assert sorted(await _search(db, owner, "会议")) == sorted([gone.id, kept.id])

    async with db.session() as session:
        await records.delete_record(session, owner, gone.id)
    assert await _cjk_body(db, gone.id) == []
    assert await _search(db, owner, "会议") == [kept.id]
    assert await _search(db, owner, "秘密") == []

    # A database from before (or a VACUUM that renumbered rowids): the tombstone still indexed,
    # the live record not. The rebuild puts it right.
    async with db.session() as session:
        rowids = {
            rid: (await session.execute(text("SELECT rowid FROM records WHERE id = :id"), {"id": rid})).scalar_one()
            for rid in (gone.id, kept.id)
        }
        await session.execute(text("DELETE FROM records_cjk WHERE rowid = :r"), {"r": rowids[kept.id]})
        await session.execute(
            text("INSERT INTO records_cjk(rowid, body) VALUES (:r, '秘 密 x 会 议')"), {"r": rowids[gone.id]}
        )
        await session.commit()
    async with db.session() as session:
        assert await crud.rebuild_search_index(session) >= 1
    assert await _cjk_body(db, gone.id) == []
    assert await _cjk_body(db, kept.id) == ["周 一 x 项 目 会 议"]
    assert await _search(db, owner, "会议") == [kept.id]
    assert await _search(db, owner, "项目会议") == [kept.id]  # the trigram index was rebuilt too


# The search index of revision 0001 (document id = records.rowid), as databases made before
# owner-ranged ids hold it.
LEGACY_SEARCH_DDL = (
    "CREATE VIRTUAL TABLE records_fts USING fts5("
    "title, content, content='records', content_rowid='rowid', tokenize='trigram')",
    "CREATE TRIGGER records_fts_insert AFTER INSERT ON records BEGIN "
    "INSERT INTO records_fts(rowid, title, content) VALUES (new.rowid, new.title, new.content); END",
    "INSERT INTO records_fts(records_fts) VALUES ('rebuild')",
)


async def _make_legacy(db: Database) -> None:
    async with db.engine.begin() as conn:
        for name in ("records_search_insert", "records_search_update", "records_search_delete"):
            await conn.execute(text(f"DROP TRIGGER {name}"))
        await conn.execute(text("DROP TABLE records_search"))
        await conn.execute(text("DROP TABLE records_search_owners"))
        for statement in LEGACY_SEARCH_DDL:
            await conn.execute(text(statement))


async def _objects(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return {row[0] for row in await conn.execute(text("SELECT name FROM sqlite_master"))}


async def test_a_database_with_the_old_search_index_is_upgraded_at_start(db: Database) -> None:
    owner, other = str(uuid.uuid4()), str(uuid.uuid4())
    async with db.session() as session:
        mine = await records.create_record(session, owner, RecordCreate(title="Old lantern", content="kept"))
    async with db.session() as session:
        theirs = await records.create_record(session, other, RecordCreate(title="lantern", content="theirs"))
    async with db.session() as session:
        dropped = await records.create_record(session, owner, RecordCreate(title="lantern too", content="gone"))
    async with db.session() as session:
        await records.delete_record(session, owner, dropped.id)
    await _make_legacy(db)
    assert "records_search" not in await _objects(db)

    await db.create_all()  # what every service does at start

    present = await _objects(db)
    assert {"records_search", "records_search_owners", "records_search_insert"} <= present
    assert not {name for name in present if name.startswith("records_fts")}
    assert await _search(db, owner, "lantern") == [mine.id]
    assert await _search(db, other, "lantern") == [theirs.id]
    await db.create_all()  # a second start changes nothing
    assert await _search(db, owner, "lantern") == [mine.id]


async def test_an_upgrade_cut_short_or_an_emptied_index_is_redone_at_the_next_start(db: Database) -> None:
    owner = str(uuid.uuid4())
    async with db.session() as session:
        mine = await records.create_record(session, owner, RecordCreate(title="lantern", content="x"))
    await _make_legacy(db)
    async with db.engine.begin() as conn:  # the new objects made, the refill never committed
        for statement in _SQLITE_SEARCH_DDL:
            await conn.execute(text(statement))
    assert await _search(db, owner, "lantern") == []

    await db.create_all()
    assert await _search(db, owner, "lantern") == [mine.id]
    assert not {name for name in await _objects(db) if name.startswith("records_fts")}

    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM records_search"))
    await db.create_all()
    assert await _search(db, owner, "lantern") == [mine.id]

    async with db.engine.begin() as conn:  # a part of the index gone
        await conn.execute(text("DROP TABLE records_cjk"))
    await db.create_all()
    assert "records_cjk" in await _objects(db)
    assert await _search(db, owner, "lantern") == [mine.id]
