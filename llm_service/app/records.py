"""The caller's own records, read (never written) from the ``records`` table for chat context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.models.record import Record


@dataclass(frozen=True, slots=True)
class RecordText:
    id: str
    title: str
    content: str


async def owned_record_texts(session: AsyncSession, owner_id: str, record_ids: Sequence[str]) -> list[RecordText]:
    """Title and content of those of ``record_ids`` that the owner has and has not deleted, in the
    order asked. Others' records and missing ids are simply absent (the caller answers 404)."""
    if not record_ids:
        return []
    rows = await session.execute(
        select(Record.id, Record.title, Record.content).where(
            Record.owner_id == owner_id, Record.id.in_(list(record_ids)), Record.deleted_at.is_(None)
        )
    )
    found = {row.id: RecordText(row.id, row.title or "", row.content or "") for row in rows}
    return [found[i] for i in record_ids if i in found]
