"""Data access of the semantic index (tables in ``common.models.record_index``). Every query of
chunks or state names its owner, or a record id the caller has already proved the owner has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common.database import unindexed, utcnow
from common.leases import LeasedTable
from common.models.record import Record, RecordChangeCounter, RecordTag
from common.models.record_index import (
    INDEX_FAILED,
    INDEX_INDEXED,
    INDEX_PENDING,
    RecordChunk,
    RecordIndexOwner,
    RecordIndexState,
)


def _insert_for(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


# ---------------------------------------------------------------- the write path (mobile_service)


async def mark_pending(session: AsyncSession, record: Record) -> None:
    """Inside the write that changed the record's text: its chunks are now for an older version.
    A worker busy with that older version finds ``wanted_version`` moved and keeps nothing."""
    table = RecordIndexState.__table__
    now = utcnow()
    values = {
        "wanted_version": record.version,
        "status": INDEX_PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "updated_at": now,
    }
    stmt = (
        _insert_for(session)(table)
        .values(id=record.id, owner_id=record.owner_id, **values)
        .on_conflict_do_update(index_elements=[table.c.id], set_=values)
    )
    await session.execute(stmt)


async def forget_record(session: AsyncSession, owner_id: str, record_id: str) -> None:
    """Inside the delete of a record: its chunks and index state go at once."""
    await session.execute(
        delete(RecordChunk).where(RecordChunk.record_id == record_id, RecordChunk.owner_id == owner_id)
    )
    await session.execute(
        delete(RecordIndexState).where(RecordIndexState.id == record_id, RecordIndexState.owner_id == owner_id)
    )
    await bump_generation(session, owner_id)


async def bump_generation(session: AsyncSession, owner_id: str) -> int:
    """The owner's next chunk generation, taken inside the current transaction (the row stays
    locked until it ends, so the owner's chunk changes commit in generation order)."""
    table = RecordIndexOwner.__table__
    stmt = (
        _insert_for(session)(table)
        .values(id=owner_id, generation=1)
        .on_conflict_do_update(index_elements=[table.c.id], set_={"generation": table.c.generation + 1})
        .returning(table.c.generation)
    )
    return int((await session.execute(stmt)).scalar_one())


async def mark_all_pending(session: AsyncSession) -> int:
    """The rebuild: every live record pending (state rows made for those that have none); commits."""
    await session.execute(update(RecordIndexState).values(status=INDEX_PENDING, attempts=0, next_attempt_at=utcnow()))
    missing = select(Record.id, Record.owner_id, Record.version).where(
        Record.deleted_at.is_(None), ~select(RecordIndexState.id).where(RecordIndexState.id == Record.id).exists()
    )
    for row in (await session.execute(missing)).all():
        session.add(RecordIndexState(id=row.id, owner_id=row.owner_id, wanted_version=row.version))
    total = await session.scalar(select(func.count()).select_from(RecordIndexState))
    await session.commit()
    return int(total or 0)


# ---------------------------------------------------------------- the indexer (llm_service)


def leased_index(current_model: str) -> LeasedTable:
    """The index rows as units of work: pending or failed ones whose retry time has come, and
    indexed ones made with another model than ``current_model`` (re-embedded lazily)."""

    def is_work(now: datetime) -> Any:
        return or_(
            and_(RecordIndexState.status != INDEX_INDEXED, RecordIndexState.next_attempt_at <= now),
            and_(RecordIndexState.status == INDEX_INDEXED, RecordIndexState.model != current_model),
        )

    return LeasedTable(
        RecordIndexState.id,
        RecordIndexState.lease_owner,
        RecordIndexState.lease_expires_at,
        is_work=is_work,
        order_by=RecordIndexState.next_attempt_at,
    )


@dataclass(frozen=True, slots=True)
class IndexWork:
    record_id: str
    owner_id: str
    version: int
    title: str
    content: str
    live: bool
    content_hash: str | None
    model: str | None


async def load_work(session: AsyncSession, record_id: str) -> IndexWork | None:
    """The claimed row with its record's current text; None when the row is gone."""
    row = (
        await session.execute(
            select(
                RecordIndexState.owner_id,
                RecordIndexState.content_hash,
                RecordIndexState.model,
                Record.version,
                Record.title,
                Record.content,
                Record.deleted_at,
            )
            .outerjoin(Record, and_(Record.id == RecordIndexState.id, Record.owner_id == RecordIndexState.owner_id))
            .where(RecordIndexState.id == record_id)
        )
    ).first()
    if row is None:
        return None
    live = row.version is not None and row.deleted_at is None
    return IndexWork(
        record_id,
        row.owner_id,
        row.version or 0,
        row.title or "",
        row.content or "",
        live,
        row.content_hash,
        row.model,
    )


@dataclass(frozen=True, slots=True)
class ChunkRow:
    ordinal: int
    text: str
    embedding: bytes
    dimensions: int


async def save_chunks(
    session: AsyncSession,
    work: IndexWork,
    worker_id: str,
    *,
    model: str,
    content_hash: str,
    chunks: Sequence[ChunkRow] | None,
) -> bool:
    """Replace the record's chunks with those of ``work.version``, but only while this worker holds
    the row and no newer write came meanwhile (then nothing is kept and the row stays pending).
    ``chunks`` None keeps the stored ones (the text did not change). Commits when it kept them."""
    claimed = await session.execute(
        update(RecordIndexState)
        .where(
            RecordIndexState.id == work.record_id,
            RecordIndexState.lease_owner == worker_id,
            RecordIndexState.wanted_version == work.version,
        )
        .values(
            status=INDEX_INDEXED,
            indexed_version=work.version,
            model=model,
            content_hash=content_hash,
            attempts=0,
            last_error=None,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=utcnow(),
        )
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        return False
    if chunks is not None:
        generation = await bump_generation(session, work.owner_id)
        await session.execute(delete(RecordChunk).where(RecordChunk.record_id == work.record_id))
        for chunk in chunks:
            session.add(
                RecordChunk(
                    record_id=work.record_id,
                    owner_id=work.owner_id,
                    version=work.version,
                    generation=generation,
                    ordinal=chunk.ordinal,
                    model=model,
                    dimensions=chunk.dimensions,
                    text=chunk.text,
                    embedding=chunk.embedding,
                )
            )
    await session.commit()
    return True


async def save_failure(
    session: AsyncSession,
    record_id: str,
    worker_id: str,
    *,
    error: str,
    attempts: int,
    retry_at: datetime,
    failed: bool,
) -> None:
    """A failed attempt: the row waits until ``retry_at`` (``failed`` once it kept failing); commits."""
    await session.execute(
        update(RecordIndexState)
        .where(RecordIndexState.id == record_id, RecordIndexState.lease_owner == worker_id)
        .values(
            status=INDEX_FAILED if failed else INDEX_PENDING,
            attempts=attempts,
            next_attempt_at=retry_at,
            last_error=error[:500],
            lease_owner=None,
            lease_expires_at=None,
            updated_at=utcnow(),
        )
    )
    await session.commit()


async def attempts_of(session: AsyncSession, record_id: str) -> int:
    found = await session.scalar(select(RecordIndexState.attempts).where(RecordIndexState.id == record_id))
    return int(found or 0)


async def drop_row(session: AsyncSession, record_id: str, worker_id: str) -> None:
    """The record is gone (deleted between the write and the claim): no state, no chunks; commits."""
    owner = await session.scalar(
        select(RecordIndexState.owner_id).where(
            RecordIndexState.id == record_id, RecordIndexState.lease_owner == worker_id
        )
    )
    if owner is not None:
        await forget_record(session, owner, record_id)
    await session.commit()


# ---------------------------------------------------------------- reads (status, search)


@dataclass(frozen=True, slots=True)
class IndexStatus:
    records: int
    indexed: int
    pending: int
    failed: int


async def owner_status(session: AsyncSession, owner_id: str, model: str) -> IndexStatus:
    """The owner's live records and where each stands with the current ``model``."""
    records = await session.scalar(
        select(func.count()).select_from(Record).where(Record.owner_id == owner_id, Record.deleted_at.is_(None))
    )
    rows = await session.execute(
        select(RecordIndexState.status, RecordIndexState.model, func.count())
        .where(RecordIndexState.owner_id == owner_id)
        .group_by(RecordIndexState.status, RecordIndexState.model)
    )
    indexed = failed = 0
    for status, row_model, count in rows.all():
        if status == INDEX_INDEXED and row_model == model:
            indexed += count
        elif status == INDEX_FAILED:
            failed += count
    total = int(records or 0)
    return IndexStatus(total, indexed, max(total - indexed - failed, 0), failed)


async def owner_generation(session: AsyncSession, owner_id: str) -> int:
    """The owner's chunk generation: every change of the owner's chunks (a record indexed, a record
    deleted), by any process, moves it."""
    found = await session.scalar(select(RecordIndexOwner.generation).where(RecordIndexOwner.id == owner_id))
    return int(found or 0)


async def owner_vectors(
    session: AsyncSession, owner_id: str, model: str, record_ids: Sequence[str] | None = None
) -> list[Any]:
    """(chunk id, record id, text, embedding bytes) of the owner's chunks made by ``model`` (of
    ``record_ids`` only, if given). A delete removes its record's chunks in its own transaction, so
    these are live records'."""
    columns = (RecordChunk.id, RecordChunk.record_id, RecordChunk.text, RecordChunk.embedding)
    if record_ids is None:
        stmt = select(*columns).where(RecordChunk.owner_id == owner_id, RecordChunk.model == model)
    else:  # by the record index, not by scanning the owner's chunks
        stmt = select(*columns).where(
            RecordChunk.record_id.in_(list(record_ids)),
            unindexed(RecordChunk.owner_id) == owner_id,
            unindexed(RecordChunk.model) == model,
        )
    return list((await session.execute(stmt.order_by(RecordChunk.record_id, RecordChunk.ordinal))).all())


async def owner_change_seq(session: AsyncSession, owner_id: str) -> int:
    found = await session.scalar(select(RecordChangeCounter.value).where(RecordChangeCounter.id == owner_id))
    return int(found or 0)


async def changed_since(
    session: AsyncSession, owner_id: str, model: str, *, generation: int, change_seq: int, limit: int
) -> set[str] | None:
    """The owner's records whose chunks may differ from a copy taken at (``generation``,
    ``change_seq``): re-indexed since, or written (edited, deleted) since. None: more than
    ``limit`` (reload everything instead)."""
    indexed = select(RecordChunk.record_id).where(
        RecordChunk.owner_id == owner_id, RecordChunk.model == model, RecordChunk.generation > generation
    )
    written = select(Record.id).where(Record.owner_id == owner_id, Record.change_seq > change_seq)
    ids: set[str] = set()
    for stmt in (indexed.distinct().limit(limit + 1), written.limit(limit + 1)):
        ids.update(row[0] for row in await session.execute(stmt))
        if len(ids) > limit:
            return None
    return ids


async def live_titles(
    session: AsyncSession, owner_id: str, record_ids: Sequence[str], tag: str | None = None
) -> dict[str, str]:
    """Titles of those of ``record_ids`` that are the owner's live records (with ``tag``, if given)."""
    if not record_ids:
        return {}
    stmt = select(Record.id, Record.title).where(
        Record.id.in_(list(record_ids)), unindexed(Record.owner_id) == owner_id, Record.deleted_at.is_(None)
    )
    if tag is not None:
        stmt = stmt.where(
            select(RecordTag.record_id)
            .where(RecordTag.record_id == Record.id, RecordTag.owner_id == owner_id, RecordTag.tag == tag.lower())
            .exists()
        )
    return {row.id: row.title for row in await session.execute(stmt)}


async def owner_dimensions(session: AsyncSession, owner_id: str, model: str) -> int | None:
    return await session.scalar(
        select(RecordChunk.dimensions).where(RecordChunk.owner_id == owner_id, RecordChunk.model == model).limit(1)
    )
