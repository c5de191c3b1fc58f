"""Data access of image_service: images, generation tasks and results, and the one read of the
shared ``records`` table. Every query of user data carries its owner in the WHERE clause.
fastcrud's ``FastCRUD`` serves the existence checks and counts; the ORM rows that writes change,
and the pages (``common.pagination.paginate``) are written out here; the lease statements of the
generation workers are ``task_leases``, a ``common.leases.LeasedTable``."""

from __future__ import annotations

import re

from fastcrud import FastCRUD
from sqlalchemy import ColumnElement, String, and_, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.database import utcnow
from common.leases import LeasedTable
from common.models.image import (
    RESULT_CANCELLED,
    RESULT_FAILED,
    RESULT_PENDING,
    RESULT_RUNNING,
    RESULT_SUCCEEDED,
    TASK_CANCELLED,
    TASK_PENDING,
    TASK_RUNNING,
    TASK_UNFINISHED,
    GenerationResult,
    GenerationTask,
    Image,
)
from common.models.record import VISIBILITY_PUBLIC, Record
from common.pagination import paginate

DONE_RESULTS = (RESULT_SUCCEEDED, RESULT_FAILED)

crud_tasks: FastCRUD = FastCRUD(GenerationTask)
crud_records: FastCRUD = FastCRUD(Record)

# Ids are server-made UUIDs (or client UUIDs for records): anything else cannot exist.
ID_PATTERN = re.compile(r"^[0-9A-Za-z-]{1,36}$")


def is_valid_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))


# ---------------------------------------------------------------- images


async def get_image(session: AsyncSession, image_id: str) -> Image | None:
    if not is_valid_id(image_id):
        return None
    return await session.get(Image, image_id)


async def get_owned_image(session: AsyncSession, owner_id: str, image_id: str) -> Image | None:
    if not is_valid_id(image_id):
        return None
    result = await session.execute(select(Image).where(Image.id == image_id, Image.owner_id == owner_id))
    return result.scalar_one_or_none()


async def find_by_source_hash(session: AsyncSession, owner_id: str, source_sha256: str) -> Image | None:
    result = await session.execute(
        select(Image).where(Image.owner_id == owner_id, Image.source_sha256 == source_sha256)
    )
    return result.scalar_one_or_none()


async def list_images(session: AsyncSession, owner_id: str, offset: int, limit: int) -> tuple[list[Image], int]:
    stmt = select(Image).where(Image.owner_id == owner_id).order_by(Image.created_at.desc(), Image.id)
    return await paginate(session, stmt, offset, limit)


# ---------------------------------------------------------------- records (read-only, shared table)


async def record_is_owned(session: AsyncSession, owner_id: str, record_id: str) -> bool:
    """The record exists, is not deleted and belongs to ``owner_id``."""
    if not is_valid_id(record_id):
        return False
    return await crud_records.exists(session, id=record_id, owner_id=owner_id, deleted_at=None)


async def is_published_attachment(session: AsyncSession, image: Image) -> bool:
    """Is the image attached to a public, non-deleted record of the image's own owner?

    The JSON ``attachments`` list is matched as text (portable across SQLite and PostgreSQL; the
    id is a validated UUID, so it holds no LIKE wildcard), then confirmed on the decoded list.
    """
    if not is_valid_id(image.id):
        return False
    rows = await session.execute(
        select(Record.attachments).where(
            Record.owner_id == image.owner_id,
            Record.visibility == VISIBILITY_PUBLIC,
            Record.deleted_at.is_(None),
            cast(Record.attachments, String).like(f'%"{image.id}"%'),
        )
    )
    return any(image.id in (attachments or []) for (attachments,) in rows)


# ---------------------------------------------------------------- generation tasks


async def get_owned_task(session: AsyncSession, owner_id: str, task_id: str) -> GenerationTask | None:
    if not is_valid_id(task_id):
        return None
    result = await session.execute(
        select(GenerationTask).where(GenerationTask.id == task_id, GenerationTask.owner_id == owner_id)
    )
    return result.scalar_one_or_none()


async def list_tasks(session: AsyncSession, owner_id: str, offset: int, limit: int) -> tuple[list[GenerationTask], int]:
    stmt = (
        select(GenerationTask)
        .where(GenerationTask.owner_id == owner_id)
        .order_by(GenerationTask.created_at.desc(), GenerationTask.id)
    )
    return await paginate(session, stmt, offset, limit)


async def count_unfinished_tasks(session: AsyncSession, owner_id: str) -> int:
    return await crud_tasks.count(session, owner_id=owner_id, status__in=list(TASK_UNFINISHED))


async def results_of(session: AsyncSession, task_ids: list[str]) -> dict[str, list[GenerationResult]]:
    grouped: dict[str, list[GenerationResult]] = {task_id: [] for task_id in task_ids}
    if not task_ids:
        return grouped
    rows = await session.execute(
        select(GenerationResult)
        .where(GenerationResult.task_id.in_(task_ids))
        .order_by(GenerationResult.task_id, GenerationResult.index)
    )
    for result in rows.scalars():
        grouped[result.task_id].append(result)
    return grouped


async def get_result(session: AsyncSession, task_id: str, index: int) -> GenerationResult | None:
    result = await session.execute(
        select(GenerationResult).where(GenerationResult.task_id == task_id, GenerationResult.index == index)
    )
    return result.scalar_one_or_none()


async def cancel_task(session: AsyncSession, task: GenerationTask) -> None:
    """Mark the task and its unfinished results cancelled. The worker holding the lease sees it on
    its next heartbeat and stops its in-flight calls; a call that still returns is discarded."""
    now = utcnow()
    await session.execute(
        update(GenerationTask)
        .where(GenerationTask.id == task.id, GenerationTask.status.in_(TASK_UNFINISHED))
        .values(status=TASK_CANCELLED, updated_at=now, finished_at=now)
    )
    await session.execute(
        update(GenerationResult)
        .where(GenerationResult.task_id == task.id, GenerationResult.status.in_((RESULT_PENDING, RESULT_RUNNING)))
        .values(status=RESULT_CANCELLED, error="cancelled")
    )


# ---------------------------------------------------------------- leases (workers)
# A task is work while it is unfinished; the oldest is claimed first (common/leases.py).

task_leases = LeasedTable(
    GenerationTask.id,
    GenerationTask.lease_owner,
    GenerationTask.lease_expires_at,
    is_work=lambda now: GenerationTask.status.in_(TASK_UNFINISHED),
    order_by=GenerationTask.created_at,
)


# ---------------------------------------------------------------- the generation worker's writes
# Each is a conditional statement: a cancel committed meanwhile by another request never loses.


async def start_task(session: AsyncSession, task_id: str) -> list[tuple[int, int]]:
    """Mark a pending task running and put results a dead worker left ``running`` back to
    ``pending``; answers (index, attempts so far) of the results to work."""
    await session.execute(
        update(GenerationTask)
        .where(GenerationTask.id == task_id, GenerationTask.status == TASK_PENDING)
        .values(status=TASK_RUNNING, updated_at=utcnow())
    )
    await session.execute(
        update(GenerationResult)
        .where(GenerationResult.task_id == task_id, GenerationResult.status == RESULT_RUNNING)
        .values(status=RESULT_PENDING)
    )
    rows = await session.execute(
        select(GenerationResult.index, GenerationResult.attempts)
        .where(GenerationResult.task_id == task_id, GenerationResult.status == RESULT_PENDING)
        .order_by(GenerationResult.index)
    )
    return [(index, attempts) for index, attempts in rows]


def _result_in(task_id: str, index: int, *statuses: str) -> ColumnElement[bool]:
    return and_(
        GenerationResult.task_id == task_id, GenerationResult.index == index, GenerationResult.status.in_(statuses)
    )


async def mark_result_running(session: AsyncSession, task_id: str, index: int, attempt: int) -> bool:
    """False when the result is no longer to be worked (cancelled meanwhile)."""
    result = await session.execute(
        update(GenerationResult)
        .where(_result_in(task_id, index, RESULT_PENDING, RESULT_RUNNING))
        .values(status=RESULT_RUNNING, attempts=attempt)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def succeed_result(session: AsyncSession, task_id: str, index: int, image_id: str) -> bool:
    result = await session.execute(
        update(GenerationResult)
        .where(_result_in(task_id, index, RESULT_RUNNING))
        .values(status=RESULT_SUCCEEDED, image_id=image_id, error=None)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def fail_result(session: AsyncSession, task_id: str, index: int, error: str) -> None:
    await session.execute(
        update(GenerationResult)
        .where(_result_in(task_id, index, RESULT_RUNNING))
        .values(status=RESULT_FAILED, error=error)
    )


async def update_progress(session: AsyncSession, task_id: str) -> None:
    done = await session.scalar(
        select(func.count())
        .select_from(GenerationResult)
        .where(GenerationResult.task_id == task_id, GenerationResult.status.in_(DONE_RESULTS))
    )
    total = await session.scalar(
        select(func.count()).select_from(GenerationResult).where(GenerationResult.task_id == task_id)
    )
    progress = int(100 * (done or 0) / total) if total else 100
    await session.execute(
        update(GenerationTask).where(GenerationTask.id == task_id).values(progress=progress, updated_at=utcnow())
    )


async def result_statuses(session: AsyncSession, task_id: str) -> list[str]:
    rows = await session.execute(select(GenerationResult.status).where(GenerationResult.task_id == task_id))
    return list(rows.scalars())


async def settle_task(session: AsyncSession, task_id: str, worker_id: str, values: dict[str, object]) -> bool:
    """Write the task's final values while this worker still holds it and it is unfinished."""
    settled = await session.execute(
        update(GenerationTask)
        .where(
            GenerationTask.id == task_id,
            GenerationTask.lease_owner == worker_id,
            GenerationTask.status.in_(TASK_UNFINISHED),
        )
        .values(**values)
    )
    return settled.rowcount == 1  # type: ignore[attr-defined]


async def cancel_unfinished_results(session: AsyncSession, task_id: str) -> None:
    await session.execute(
        update(GenerationResult)
        .where(GenerationResult.task_id == task_id, GenerationResult.status.in_((RESULT_PENDING, RESULT_RUNNING)))
        .values(status=RESULT_CANCELLED, error="cancelled")
    )
