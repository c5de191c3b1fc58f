"""Data access for records: the FastCRUD instance and the hand-written queries (search, sync,
the change counter). Every query of user data names its owner."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastcrud import FastCRUD
from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from common.database import Database
from common.models.record import (
    PG_SEARCH_VECTOR,
    SQLITE_CJK_TABLE,
    VISIBILITY_PUBLIC,
    Record,
    RecordChangeCounter,
    RecordTag,
    cjk_index_text,
    cjk_phrase,
    rebuild_sqlite_search_index_sql,
)
from mobile_service.app.schemas import RecordRead

crud_records: FastCRUD = FastCRUD(Record)

SORTABLE = {"updated_at", "created_at", "title"}
TRIGRAM = 3  # FTS5's trigram tokenizer needs at least three characters per term
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class ListFilters:
    owner_id: str
    tag: str | None = None
    pinned: bool | None = None


def _live_by_id() -> Select[Any]:
    return select(*Record.__table__.c).where(
        Record.id == bindparam("record_id"), Record.owner_id == bindparam("owner_id"), Record.deleted_at.is_(None)
    )


async def read_live_quick(db: Database, owner_id: str, record_id: str) -> dict[str, Any] | None:
    """The hot read (a record by id): one indexed row through ``Database.quick``."""
    rows = await db.quick.rows("records.live_by_id", _live_by_id, record_id=record_id, owner_id=owner_id)
    return rows[0] if rows else None


async def release(session: AsyncSession) -> None:
    """End a read-only transaction now, giving the connection back to the pool.

    On SQLite each process has ONE connection; a request that kept it until its response was
    written would make every other request queue behind it (measured: reads at 64 connections
    went from 64 to ~200 req/s with this alone). Results must already be plain data (response models).
    """
    await session.rollback()


async def get_owned(session: AsyncSession, owner_id: str, record_id: str) -> Record | None:
    """The caller's record, tombstones included (callers decide whether a tombstone counts)."""
    found = await session.execute(select(Record).where(Record.id == record_id, Record.owner_id == owner_id))
    return found.scalar_one_or_none()


async def id_taken(session: AsyncSession, record_id: str) -> bool:
    """Whether any owner uses this id (client-made UUIDs may collide; never say whose)."""
    found = await session.execute(select(Record.id).where(Record.id == record_id))
    return found.first() is not None


async def get_published(session: AsyncSession, slug: str) -> Record | None:
    found = await session.execute(
        select(Record).where(Record.slug == slug, Record.visibility == VISIBILITY_PUBLIC, Record.deleted_at.is_(None))
    )
    return found.scalar_one_or_none()


async def next_change_seq(session: AsyncSession, owner_id: str) -> int:
    """Take the owner's next change number inside the current transaction.

    The counter row stays locked (PostgreSQL row lock; SQLite's database write lock) until the
    transaction ends, so changes of one owner commit in sequence order. Call it FIRST in a write.
    """
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table_ = RecordChangeCounter.__table__
    stmt = (
        builder(table_)
        .values(id=owner_id, value=1)
        .on_conflict_do_update(index_elements=[table_.c.id], set_={"value": table_.c.value + 1})
        .returning(table_.c.value)
    )
    return int((await session.execute(stmt)).scalar_one())


async def current_change_seq(session: AsyncSession, owner_id: str) -> int:
    found = await session.execute(select(RecordChangeCounter.value).where(RecordChangeCounter.id == owner_id))
    return int(found.scalar_one_or_none() or 0)


async def reindex_cjk(session: AsyncSession, record_id: str, title: str, content: str) -> None:
    """Keep ``records_cjk`` (SQLite only) in step with a record's text, inside the write."""
    if _dialect(session) != "sqlite":
        return
    rowid = (await session.execute(text("SELECT rowid FROM records WHERE id = :id"), {"id": record_id})).scalar_one()
    await session.execute(text("DELETE FROM records_cjk WHERE rowid = :rowid"), {"rowid": rowid})
    body = cjk_index_text(title, content)
    if body:
        await session.execute(
            text("INSERT INTO records_cjk(rowid, body) VALUES (:rowid, :body)"), {"rowid": rowid, "body": body}
        )


async def rebuild_search_index(session: AsyncSession, batch: int = 500) -> int:
    """Rebuild both SQLite search tables from ``records`` (after a VACUUM, which may renumber
    rowids, or to drop rows of records removed outside the write path): ``records_fts`` by
    FTS5's own rebuild, ``records_cjk`` emptied and refilled from the live records only
    (tombstones have no text to find). Returns the number of CJK rows written; commits."""
    if _dialect(session) != "sqlite":
        return 0
    await session.execute(text(rebuild_sqlite_search_index_sql()))
    await session.execute(text(f"DELETE FROM {SQLITE_CJK_TABLE}"))  # noqa: S608  (a constant name)
    written, last_rowid = 0, -1
    while True:
        rows = (
            await session.execute(
                text(
                    "SELECT rowid, title, content FROM records WHERE rowid > :after AND deleted_at IS NULL "
                    "ORDER BY rowid LIMIT :batch"
                ),
                {"after": last_rowid, "batch": batch},
            )
        ).all()
        if not rows:
            break
        values = [{"rowid": r[0], "body": cjk_index_text(r[1], r[2])} for r in rows]
        values = [v for v in values if v["body"]]
        if values:
            insert_cjk = f"INSERT INTO {SQLITE_CJK_TABLE}(rowid, body) VALUES (:rowid, :body)"  # noqa: S608
            await session.execute(text(insert_cjk), values)
        written += len(values)
        last_rowid = rows[-1][0]
    await session.commit()
    return written


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


async def replace_tags(session: AsyncSession, record: Record) -> None:
    await session.execute(delete(RecordTag).where(RecordTag.record_id == record.id))
    if record.tags and record.deleted_at is None:
        await session.execute(
            insert(RecordTag), [{"record_id": record.id, "owner_id": record.owner_id, "tag": t} for t in record.tags]
        )


def _filters(filters: ListFilters, *, owner_unindexed: bool = False) -> list[ColumnElement[bool]]:
    # ``+column`` keeps SQLite from driving a full-text query by the owner index: it would then
    # run the MATCH once per row of the owner (measured: a minute at 100,000 records, vs ms).
    owner = literal_column("+records.owner_id") if owner_unindexed else Record.owner_id
    where: list[ColumnElement[bool]] = [owner == filters.owner_id, Record.deleted_at.is_(None)]
    if filters.pinned is not None:
        where.append(Record.pinned.is_(filters.pinned))
    if filters.tag is not None:
        tagged = select(RecordTag.record_id).where(
            RecordTag.owner_id == filters.owner_id, RecordTag.tag == clean_query_text(filters.tag).strip().lower()
        )
        where.append(Record.id.in_(tagged))
    return where


def parse_sort(sort: str) -> tuple[str, str]:
    """``-updated_at`` → (``updated_at``, ``desc``); unknown columns are refused by the caller."""
    column = sort.lstrip("-")
    return column, "desc" if sort.startswith("-") else "asc"


async def list_page(
    session: AsyncSession, filters: ListFilters, *, offset: int, limit: int, sort: str
) -> dict[str, Any]:
    """A page of the owner's live records through fastcrud (owner in the WHERE clause)."""
    column, order = parse_sort(sort)
    page = await crud_records.get_multi(
        session,
        offset=offset,
        limit=limit,
        schema_to_select=RecordRead,
        sort_columns=[column, "id"],
        sort_orders=[order, order],
        where=_filters(filters),
    )
    await release(session)
    return {"data": page["data"], "total_count": page["total_count"]}


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _substring_match(term: str) -> ColumnElement[bool]:
    pattern = _like_pattern(term)
    return or_(Record.title.ilike(pattern, escape="\\"), Record.content.ilike(pattern, escape="\\"))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_query_text(value: str) -> str:
    """Query input without control characters (they are never part of stored text)."""
    return _CONTROL.sub(" ", value)


def search_terms(q: str) -> list[str]:
    return [term for term in clean_query_text(q).split() if term][:16]


def _sqlite_search(filters: ListFilters, terms: list[str]) -> tuple[Select[Any], Any]:
    """FTS5 trigram for terms of 3+ characters (ranked by bm25, title weighted); one- and
    two-character CJK words (会议) through ``records_cjk`` as phrases of adjacent characters;
    other short terms (``me``) as a substring match."""
    long_terms = [t for t in terms if len(t) >= TRIGRAM]
    short = [t for t in terms if len(t) < TRIGRAM]
    cjk = [phrase for phrase in (cjk_phrase(t) for t in short) if phrase]
    plain_short = [t for t in short if not cjk_phrase(t)]
    if long_terms:
        driver, match = "records_fts", " AND ".join('"' + t.replace('"', '""') + '"' for t in long_terms)
        rank = literal_column("bm25(records_fts, 10.0, 1.0)")
    elif cjk:
        driver, match, cjk = "records_cjk", " AND ".join(cjk), []
        rank = literal_column("bm25(records_cjk)")
    else:
        where = _filters(filters) + [_substring_match(t) for t in plain_short]
        return select(Record).where(*where), Record.updated_at.desc()
    where = _filters(filters, owner_unindexed=True) + [_substring_match(t) for t in plain_short]
    if cjk:
        in_cjk = (
            text("SELECT rowid FROM records_cjk WHERE records_cjk MATCH :cjk")
            .bindparams(cjk=" AND ".join(cjk))
            .columns(column("rowid", Integer))
        )
        where.append(literal_column("records.rowid").in_(in_cjk))
    stmt = (
        select(Record)
        .join(table(driver), literal_column(f"{driver}.rowid") == literal_column("records.rowid"))
        .where(text(f"{driver} MATCH :match").bindparams(match=match), *where)
    )
    return stmt, rank


def _postgres_search(filters: ListFilters, terms: list[str], q: str) -> tuple[Select[Any], Any]:
    """``simple`` tsvector (GIN index) ranked by ts_rank; text in scripts without spaces between
    words (Chinese, Japanese) also matches as a substring, since the parser cannot split it."""
    vector = literal_column(PG_SEARCH_VECTOR)
    query = func.plainto_tsquery("simple", q)
    matched: ColumnElement[bool] = vector.op("@@")(query)
    if _CJK.search(q):
        matched = or_(matched, and_(*[_substring_match(t) for t in terms]))
    rank = func.ts_rank(vector, query).desc()
    return select(Record).where(*_filters(filters), matched), rank


async def search_page(
    session: AsyncSession, filters: ListFilters, q: str, *, offset: int, limit: int
) -> dict[str, Any]:
    """Ranked full-text search over title and content of the owner's live records."""
    q = clean_query_text(q)
    terms = search_terms(q)
    if _dialect(session) == "postgresql":
        stmt, order = _postgres_search(filters, terms, q)
    else:
        stmt, order = _sqlite_search(filters, terms)
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = (await session.execute(stmt.order_by(order, Record.updated_at.desc()).offset(offset).limit(limit))).scalars()
    data = [RecordRead.model_validate(r) for r in rows]
    await release(session)
    return {"data": data, "total_count": int(total)}


async def changes_since(session: AsyncSession, owner_id: str, after_seq: int, limit: int) -> list[Record]:
    """The owner's records changed after ``after_seq``, oldest change first (tombstones included)."""
    found = await session.execute(
        select(Record)
        .where(Record.owner_id == owner_id, Record.change_seq > after_seq)
        .order_by(Record.change_seq)
        .limit(limit)
    )
    return list(found.scalars())
