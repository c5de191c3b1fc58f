"""Data access for records: the FastCRUD instance (existence checks) and the hand-written queries
(the list and the read, compiled once through ``Database.quick``; search, sync,
the change counter). Every query of user data names its owner."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastcrud import FastCRUD
from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    case,
    column,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only
from sqlalchemy.sql.elements import ColumnElement

from common.database import Database, end_read, unindexed
from common.models.record import (
    PG_SEARCH_VECTOR,
    SEARCH_DOCID_SPAN,
    SQLITE_CJK_TABLE,
    SQLITE_SEARCH_OWNERS,
    SQLITE_SEARCH_TABLE,
    VISIBILITY_PUBLIC,
    Record,
    RecordChangeCounter,
    RecordTag,
    cjk_index_text,
    cjk_phrase,
    rebuild_sqlite_search_index_sql,
)
from common.models.record_revision import KIND_VERSION, RecordRevision
from common.pagination import paginate
from common.record_index import store as index_store
from mobile_service.app.schemas import RecordRead

crud_records: FastCRUD[Record, Any, Any, Any, Any, RecordRead] = FastCRUD(Record)

SORTABLE = {"updated_at", "created_at", "title"}
TRIGRAM = 3  # FTS5's trigram tokenizer needs at least three characters per term
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class ListFilters:
    owner_id: str
    tag: str | None = None
    pinned: bool | None = None


def _read_columns() -> list[Any]:
    # Exactly the fields of ``RecordRead``: the hot reads fetch nothing the answer leaves out.
    return [Record.__table__.c[name] for name in RecordRead.model_fields]


def _live_by_id() -> Select[Any]:
    return select(*_read_columns()).where(
        Record.id == bindparam("record_id"), Record.owner_id == bindparam("owner_id"), Record.deleted_at.is_(None)
    )


async def read_live_quick(db: Database, owner_id: str, record_id: str) -> dict[str, Any] | None:
    """The hot read (a record by id): one indexed row through ``Database.quick``."""
    rows = await db.quick.rows("records.live_by_id", _live_by_id, record_id=record_id, owner_id=owner_id)
    return rows[0] if rows else None


async def get_owned(session: AsyncSession, owner_id: str, record_id: str) -> Record | None:
    """The caller's record, tombstones included (callers decide whether a tombstone counts)."""
    found = await session.execute(select(Record).where(Record.id == record_id, Record.owner_id == owner_id))
    return found.scalar_one_or_none()


async def id_taken(session: AsyncSession, record_id: str) -> bool:
    """Whether any owner uses this id (client-made UUIDs may collide; never say whose)."""
    return await crud_records.exists(session, id=record_id)


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


async def reindex_text(session: AsyncSession, record: Record) -> None:
    """Inside a write that changed the record's text (or deleted it): the SQLite CJK index now,
    the semantic index marked pending (or, for a tombstone, its chunks removed at once)."""
    await reindex_cjk(session, record.id, record.title, record.content)
    if record.deleted_at is None:
        await index_store.mark_pending(session, record)
    else:
        await index_store.forget_record(session, record.owner_id, record.id)


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
    rowids, or to drop rows of records removed outside the write path): both are emptied and
    refilled from the live records only (tombstones have no text to find). Returns the number
    of CJK rows written; commits."""
    if _dialect(session) != "sqlite":
        return 0
    for statement in rebuild_sqlite_search_index_sql():
        await session.execute(text(statement))
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


def _filters(filters: ListFilters, *, owner_unindexed: bool = False, by_ids: bool = False) -> list[ColumnElement[bool]]:
    # ``+column`` keeps SQLite from driving a full-text query by the owner index: it would then
    # run the MATCH once per row of the owner (measured: a minute at 100,000 records, vs ms).
    # ``by_ids``: a lookup of a few ids, by primary key rather than by scanning the owner's rows.
    owner: Any = Record.owner_id
    if owner_unindexed:
        owner = literal_column("+records.owner_id")
    elif by_ids:
        owner = unindexed(Record.owner_id)
    where: list[ColumnElement[bool]] = [owner == filters.owner_id, Record.deleted_at.is_(None)]
    if filters.pinned is not None:
        where.append(Record.pinned.is_(filters.pinned))
    if filters.tag is not None:
        tagged = select(RecordTag.record_id).where(
            RecordTag.owner_id == filters.owner_id, RecordTag.tag == clean_query_text(filters.tag).strip().lower()
        )
        where.append(Record.id.in_(tagged))
    return where


async def live_by_ids(session: AsyncSession, filters: ListFilters, record_ids: list[str]) -> dict[str, RecordRead]:
    """Those of ``record_ids`` that are the owner's live records passing ``filters``, by id."""
    if not record_ids:
        return {}
    rows = await session.execute(select(Record).where(Record.id.in_(record_ids), *_filters(filters, by_ids=True)))
    found = {row.id: RecordRead.model_validate(row) for row in rows.scalars()}
    await end_read(session)
    return found


async def live_ids(session: AsyncSession, filters: ListFilters, record_ids: list[str]) -> set[str]:
    """Which of ``record_ids`` are the owner's live records passing ``filters``."""
    if not record_ids:
        return set()
    rows = await session.execute(select(Record.id).where(Record.id.in_(record_ids), *_filters(filters, by_ids=True)))
    found = {row[0] for row in rows}
    await end_read(session)
    return found


def parse_sort(sort: str) -> tuple[str, str]:
    """``-updated_at`` → (``updated_at``, ``desc``); unknown columns are refused by the caller."""
    column = sort.lstrip("-")
    return column, "desc" if sort.startswith("-") else "asc"


def _live_where(pinned: bool, tagged: bool) -> list[ColumnElement[bool]]:
    """The list's filters with bound parameters (``owner_id``, ``pinned``, ``tag``)."""
    where: list[ColumnElement[bool]] = [Record.owner_id == bindparam("owner_id"), Record.deleted_at.is_(None)]
    if pinned:
        where.append(Record.pinned == bindparam("pinned"))
    if tagged:
        tagged_ids = select(RecordTag.record_id).where(
            RecordTag.owner_id == bindparam("owner_id"), RecordTag.tag == bindparam("tag")
        )
        where.append(Record.id.in_(tagged_ids))
    return where


def _live_page_statement(sort: str, pinned: bool, tagged: bool) -> Callable[[], Select[Any]]:
    column, order = parse_sort(sort)

    def build() -> Select[Any]:
        by = getattr(Record, column)
        ordering = (by.desc(), Record.id.desc()) if order == "desc" else (by.asc(), Record.id.asc())
        # The count rides along as an uncorrelated scalar subquery: both databases run it once
        # per statement (an index-only count), and the page costs one round trip, not two.
        total = _live_count_statement(pinned, tagged)().scalar_subquery().label(PAGE_TOTAL)
        return (
            select(*_read_columns(), total)
            .where(*_live_where(pinned, tagged))
            .order_by(*ordering)
            .limit(bindparam("limit"))
            .offset(bindparam("offset"))
        )

    return build


def _live_count_statement(pinned: bool, tagged: bool) -> Callable[[], Select[Any]]:
    return lambda: select(func.count().label(PAGE_TOTAL)).select_from(Record).where(*_live_where(pinned, tagged))


PAGE_TOTAL = "page_total"


async def list_page(db: Database, filters: ListFilters, *, offset: int, limit: int, sort: str) -> dict[str, Any]:
    """A page of the owner's live records (as rows of ``RecordRead``'s fields) and their count:
    one statement compiled once per (sort, filters) shape and run through ``Database.quick`` (the
    list is the mobile app's home screen; building and compiling the query per request was most
    of its CPU, bench/README.md). Only a page past the end, which has no row to carry the count,
    counts on its own."""
    pinned, tagged = filters.pinned is not None, filters.tag is not None
    params: dict[str, Any] = {"owner_id": filters.owner_id}
    if pinned:
        params["pinned"] = filters.pinned
    if tagged:
        params["tag"] = clean_query_text(filters.tag or "").strip().lower()
    shape = f"{sort}:{int(pinned)}:{int(tagged)}"
    rows = await db.quick.rows(
        f"records.page:{shape}", _live_page_statement(sort, pinned, tagged), **params, limit=limit, offset=offset
    )
    if rows:
        total = int(rows[0][PAGE_TOTAL])
    elif offset == 0:
        total = 0
    else:
        counted = await db.quick.rows(f"records.count:{shape}", _live_count_statement(pinned, tagged), **params)
        total = int(counted[0][PAGE_TOTAL])
    for row in rows:  # what remains are RecordRead's fields, in its order (``page_json``)
        del row[PAGE_TOTAL]
    return {"data": rows, "total_count": total}


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


_DOCID_MASK = SEARCH_DOCID_SPAN - 1


def _fts_phrases(terms: list[str]) -> str:
    """User terms as quoted FTS5 phrases (never FTS syntax), all required."""
    return " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)


def _cjk_rowids(cjk_terms: list[str]) -> Any:
    phrases = " AND ".join(phrase for phrase in (cjk_phrase(t) for t in cjk_terms) if phrase)
    return (
        text("SELECT rowid FROM records_cjk WHERE records_cjk MATCH :cjk")
        .bindparams(cjk=phrases)
        .columns(column("rowid", Integer))
    )


def _split_terms(terms: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(terms of 3+ characters for the trigram index, short CJK words for ``records_cjk``,
    other short terms for a substring match)."""
    long_terms = [t for t in terms if len(t) >= TRIGRAM]
    short = [t for t in terms if len(t) < TRIGRAM]
    return long_terms, [t for t in short if cjk_phrase(t)], [t for t in short if not cjk_phrase(t)]


def _in_title(terms: list[str]) -> ColumnElement[bool]:
    """Every term in the title (case-insensitive substring), for ordering title hits first."""
    return and_(*[Record.title.ilike(_like_pattern(t), escape="\\") for t in terms])


async def _sqlite_trigram_page(
    session: AsyncSession,
    filters: ListFilters,
    long_terms: list[str],
    cjk_terms: list[str],
    plain_short: list[str],
    *,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    """A page of a query with terms of 3+ characters, through ``records_search``.

    FTS5 is given the owner's document-id range (see ``common.models.record``), so counting and
    paging read only this owner's postings. Order: records with every term in the title first,
    then the others, each newest first (by creation). Not bm25: its word statistics are those of
    the whole table, every user's records, so an owner could read from the order of their own
    results how common a word is in other users' notes; and it costs ~1 us per match. The records
    themselves are then read by rowid, owner checked again."""
    number = (
        await session.execute(
            text(f"SELECT number FROM {SQLITE_SEARCH_OWNERS} WHERE owner_id = :owner"),  # noqa: S608 (constant)
            {"owner": filters.owner_id},
        )
    ).scalar_one_or_none()
    if number is None:  # this user never had a record
        await end_read(session)
        return {"data": [], "total_count": 0}
    matches = _trigram_matcher(filters, cjk_terms, plain_short, number)
    total, docids = await _title_hits_first(session, matches, _fts_phrases(long_terms), offset, limit)
    data = await _live_records_by_rowid(session, filters.owner_id, [d & _DOCID_MASK for d in docids])
    await end_read(session)
    return {"data": data, "total_count": total}


MatchQuery = Callable[..., Select[Any]]


def _trigram_matcher(filters: ListFilters, cjk_terms: list[str], plain_short: list[str], number: int) -> MatchQuery:
    """``matches(fts_query, *columns)``: a select of ``columns`` over this owner's FTS5 matches of
    ``fts_query``, narrowed by CJK characters, short terms and the list filters."""
    docid = literal_column(f"{SQLITE_SEARCH_TABLE}.rowid")
    in_range = [docid.between(number * SEARCH_DOCID_SPAN, number * SEARCH_DOCID_SPAN + _DOCID_MASK)]
    if cjk_terms:
        # On the document id, so FTS5's rows are sifted before any is joined to ``records``.
        in_range.append(docid.op("&")(_DOCID_MASK).in_(_cjk_rowids(cjk_terms)))
    where = _filters(filters, owner_unindexed=True) + [_substring_match(t) for t in plain_short]
    narrowed = filters.tag is not None or filters.pinned is not None or bool(plain_short)

    def matches(fts_query: str, *columns: Any) -> Select[Any]:
        matched = [text(f"{SQLITE_SEARCH_TABLE} MATCH :match").bindparams(match=fts_query), *in_range]
        # The range is the owner's and tombstones are not in the index: only filters on the
        # record itself need each match joined to ``records`` (a rowid lookup per match).
        if not narrowed:
            return select(*columns).select_from(table(SQLITE_SEARCH_TABLE)).where(*matched)
        joined = table(SQLITE_SEARCH_TABLE).join(
            Record.__table__, literal_column("records.rowid") == docid.op("&")(_DOCID_MASK)
        )
        return select(*columns).select_from(joined).where(*matched, *where)

    return matches


async def _title_hits_first(
    session: AsyncSession, matches: MatchQuery, terms: str, offset: int, limit: int
) -> tuple[int, list[int]]:
    """(total matches, the page's document ids): title hits first, then the others, each newest first."""
    docid = literal_column(f"{SQLITE_SEARCH_TABLE}.rowid")
    title_hits = f"{{title}} : ({terms})"
    others = f"({terms}) NOT {title_hits}"
    total = int((await session.execute(matches(terms, func.count()))).scalar_one())
    docids: list[int] = []
    if offset < total:
        title_page = matches(title_hits, docid).order_by(docid.desc()).offset(offset).limit(limit)
        docids = list((await session.execute(title_page)).scalars())
    if len(docids) < limit and offset + len(docids) < total:
        # The title hits ran out on this page (so their number is known) or before it (count them).
        if docids or offset == 0:
            in_title = offset + len(docids)
        else:
            in_title = int((await session.execute(matches(title_hits, func.count()))).scalar_one())
        start = max(offset, in_title) - in_title
        page = matches(others, docid).order_by(docid.desc()).offset(start).limit(limit - len(docids))
        docids += (await session.execute(page)).scalars()
    return total, docids


async def _live_records_by_rowid(session: AsyncSession, owner_id: str, rowids: list[int]) -> list[RecordRead]:
    """The owner's live records with these rowids, in the order given (owner checked again)."""
    if not rowids:
        return []
    found = await session.execute(
        select(Record, literal_column("records.rowid")).where(
            literal_column("records.rowid").in_(rowids),
            # Unindexed (+): by the owner index SQLite would walk all of the owner's records.
            literal_column("+records.owner_id") == owner_id,
            Record.deleted_at.is_(None),
        )
    )
    by_rowid = {rowid: record for record, rowid in found}
    return [RecordRead.model_validate(by_rowid[r]) for r in rowids if r in by_rowid]


def _sqlite_short_term_search(
    filters: ListFilters, cjk_terms: list[str], plain_short: list[str]
) -> tuple[Select[Any], Any]:
    """Queries without a term of 3+ characters: one- and two-character CJK words (会议) through
    ``records_cjk`` as phrases of adjacent characters, other short terms (``me``) as a substring
    match. Title hits first, then newest first (no bm25, for the reason told in
    ``_sqlite_trigram_page``)."""
    title_first = case((_in_title(cjk_terms + plain_short), 0), else_=1)
    if not cjk_terms:
        where = _filters(filters) + [_substring_match(t) for t in plain_short]
        return select(Record).where(*where), title_first
    where = _filters(filters, owner_unindexed=True) + [_substring_match(t) for t in plain_short]
    stmt = select(Record).where(literal_column("records.rowid").in_(_cjk_rowids(cjk_terms)), *where)
    return stmt, title_first


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
    """Full-text search over title and content of the owner's live records: matches in the title
    first (PostgreSQL: by ts_rank), then the newest."""
    q = clean_query_text(q)
    terms = search_terms(q)
    if not terms:  # only control characters or separators: nothing can match (and no empty CASE)
        await end_read(session)
        return {"data": [], "total_count": 0}
    if _dialect(session) == "postgresql":
        stmt, order = _postgres_search(filters, terms, q)
    else:
        long_terms, cjk_terms, plain_short = _split_terms(terms)
        if long_terms:
            return await _sqlite_trigram_page(
                session, filters, long_terms, cjk_terms, plain_short, offset=offset, limit=limit
            )
        stmt, order = _sqlite_short_term_search(filters, cjk_terms, plain_short)
    rows, total = await paginate(session, stmt.order_by(order, Record.updated_at.desc()), offset, limit)
    data = [RecordRead.model_validate(r) for r in rows]
    await end_read(session)
    return {"data": data, "total_count": total}


async def changes_since(session: AsyncSession, owner_id: str, after_seq: int, limit: int) -> list[Record]:
    """The owner's records changed after ``after_seq``, oldest change first (tombstones included)."""
    found = await session.execute(
        select(Record)
        .where(Record.owner_id == owner_id, Record.change_seq > after_seq)
        .order_by(Record.change_seq)
        .limit(limit)
    )
    return list(found.scalars())


# ---------------------------------------------------------------- history (docs/api.md §16)


async def change_counter(session: AsyncSession, owner_id: str) -> tuple[int, int]:
    """(the owner's last change number, the highest change number of a purged tombstone)."""
    found = await session.execute(
        select(RecordChangeCounter.value, RecordChangeCounter.purged_seq).where(RecordChangeCounter.id == owner_id)
    )
    row = found.first()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


async def newest_revision_number(session: AsyncSession, owner_id: str, record_id: str) -> int:
    found = await session.execute(
        select(func.max(RecordRevision.revision)).where(
            RecordRevision.owner_id == owner_id, RecordRevision.record_id == record_id
        )
    )
    return int(found.scalar_one_or_none() or 0)


def _states(owner_id: str, record_id: str) -> list[ColumnElement[bool]]:
    return [
        RecordRevision.owner_id == owner_id,
        RecordRevision.record_id == record_id,
        RecordRevision.kind == KIND_VERSION,
    ]


async def newest_states(session: AsyncSession, owner_id: str, record_id: str, limit: int) -> list[Any]:
    """The record's newest kept states (``version`` revisions), newest first: (revision, version,
    content_format) only."""
    found = await session.execute(
        select(RecordRevision.revision, RecordRevision.version, RecordRevision.content_format)
        .where(*_states(owner_id, record_id))
        .order_by(RecordRevision.revision.desc())
        .limit(limit)
    )
    return list(found.all())


async def state_chain(
    session: AsyncSession, owner_id: str, record_id: str, from_revision: int, limit: int | None
) -> list[RecordRevision]:
    """The record's kept states from ``from_revision`` up, oldest first (a delta's text is made
    from the next one's)."""
    stmt = (
        select(RecordRevision)
        .where(*_states(owner_id, record_id), RecordRevision.revision >= from_revision)
        .order_by(RecordRevision.revision)
    )
    found = await session.execute(stmt.limit(limit) if limit is not None else stmt)
    return list(found.scalars())


async def state_at(session: AsyncSession, owner_id: str, record_id: str, version: int) -> RecordRevision | None:
    """The kept state the record was in at ``version``, if it is still kept."""
    found = await session.execute(
        select(RecordRevision)
        .where(*_states(owner_id, record_id), RecordRevision.from_version <= version, RecordRevision.version >= version)
        .order_by(RecordRevision.revision.desc())
        .limit(1)
    )
    return found.scalar_one_or_none()


async def get_revision(session: AsyncSession, owner_id: str, record_id: str, revision: int) -> RecordRevision | None:
    found = await session.execute(
        select(RecordRevision).where(
            RecordRevision.owner_id == owner_id,
            RecordRevision.record_id == record_id,
            RecordRevision.revision == revision,
        )
    )
    return found.scalar_one_or_none()


async def revisions_page(
    session: AsyncSession, owner_id: str, record_id: str, offset: int, limit: int
) -> tuple[list[RecordRevision], int]:
    """A page of the record's revisions, newest first, without their text."""
    stmt = (
        select(RecordRevision)
        .options(
            load_only(
                RecordRevision.revision,
                RecordRevision.version,
                RecordRevision.kind,
                RecordRevision.title,
                RecordRevision.created_at,
                RecordRevision.device,
            )
        )
        .where(RecordRevision.owner_id == owner_id, RecordRevision.record_id == record_id)
        .order_by(RecordRevision.revision.desc())
    )
    return await paginate(session, stmt, offset, limit)


async def trash_page(
    session: AsyncSession, owner_id: str, deleted_since: datetime, offset: int, limit: int
) -> tuple[list[Record], int]:
    """A page of the owner's tombstones deleted since ``deleted_since``, newest deletion first."""
    stmt = (
        select(Record)
        .where(Record.owner_id == owner_id, Record.deleted_at.is_not(None), Record.deleted_at >= deleted_since)
        .order_by(Record.deleted_at.desc(), Record.id)
    )
    return await paginate(session, stmt, offset, limit)


async def last_states(session: AsyncSession, owner_id: str, record_ids: list[str]) -> dict[str, Any]:
    """The newest kept state (revision, title, tags) of each of the owner's ``record_ids``."""
    if not record_ids:
        return {}
    newest = (
        select(RecordRevision.record_id, func.max(RecordRevision.revision).label("revision"))
        .where(
            RecordRevision.owner_id == owner_id,
            RecordRevision.record_id.in_(record_ids),
            RecordRevision.kind == KIND_VERSION,
        )
        .group_by(RecordRevision.record_id)
        .subquery()
    )
    found = await session.execute(
        select(RecordRevision.record_id, RecordRevision.revision, RecordRevision.title, RecordRevision.tags)
        .join(
            newest,
            and_(RecordRevision.record_id == newest.c.record_id, RecordRevision.revision == newest.c.revision),
        )
        .where(RecordRevision.owner_id == owner_id)
    )
    return {row.record_id: row for row in found}


# ---------------------------------------------------------------- the purge


async def owners_with_tombstones_before(session: AsyncSession, before: datetime, limit: int) -> list[str]:
    """Owners that have tombstones deleted before ``before`` (the partial tombstone index)."""
    found = await session.execute(
        select(Record.owner_id)
        .where(Record.deleted_at.is_not(None), Record.deleted_at < before)
        .group_by(Record.owner_id)
        .limit(limit)
    )
    return [row[0] for row in found]


async def tombstones_before(session: AsyncSession, owner_id: str, before: datetime, limit: int) -> list[Any]:
    """(id, change_seq) of the owner's tombstones deleted before ``before``."""
    found = await session.execute(
        select(Record.id, Record.change_seq)
        .where(Record.owner_id == owner_id, Record.deleted_at.is_not(None), Record.deleted_at < before)
        .limit(limit)
    )
    return list(found.all())


async def purge_records(session: AsyncSession, owner_id: str, record_ids: list[str], purged_seq: int) -> None:
    """Remove the owner's ``record_ids`` with their revisions for good, and raise the owner's
    purge mark to ``purged_seq`` (sync cursors below it must resync)."""
    await session.execute(
        delete(RecordRevision).where(RecordRevision.owner_id == owner_id, RecordRevision.record_id.in_(record_ids))
    )
    await session.execute(delete(RecordTag).where(RecordTag.owner_id == owner_id, RecordTag.record_id.in_(record_ids)))
    await session.execute(delete(Record).where(Record.owner_id == owner_id, Record.id.in_(record_ids)))
    await session.execute(
        update(RecordChangeCounter)
        .where(RecordChangeCounter.id == owner_id, RecordChangeCounter.purged_seq < purged_seq)
        .values(purged_seq=purged_seq)
    )


async def records_with_old_revisions(
    session: AsyncSession, keep: int, before: datetime, after_record_id: str, limit: int
) -> list[Any]:
    """(owner_id, record_id) of records, by id after ``after_record_id``, that have more than
    ``keep`` revisions and one kept before ``before``."""
    found = await session.execute(
        select(RecordRevision.owner_id, RecordRevision.record_id)
        .where(RecordRevision.record_id > after_record_id)
        .group_by(RecordRevision.owner_id, RecordRevision.record_id)
        .having(func.count() > keep, func.min(RecordRevision.created_at) < before)
        .order_by(RecordRevision.record_id)
        .limit(limit)
    )
    return list(found.all())


async def trim_revisions(session: AsyncSession, owner_id: str, record_id: str, keep: int, before: datetime) -> int:
    """Delete the record's revisions older than its newest ``keep`` and kept before ``before``."""
    newest = await newest_revision_number(session, owner_id, record_id)
    done = await session.execute(
        delete(RecordRevision).where(
            RecordRevision.owner_id == owner_id,
            RecordRevision.record_id == record_id,
            RecordRevision.revision <= newest - keep,
            RecordRevision.created_at < before,
        )
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]
