"""Generation task logic for the routes: create, read, cancel, rate. The work itself is done by
``workers``; everything here is a short database transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import Conflict, NotFound, RateLimited
from common.models.image import (
    RESULT_PENDING,
    RESULT_SUCCEEDED,
    TASK_CANCELLED,
    TASK_PENDING,
    TASK_UNFINISHED,
    GenerationResult,
    GenerationTask,
)
from common.pagination import Page, page_of
from image_service.app import crud
from image_service.app.config import ImageSettings
from image_service.app.provider import require_provider
from image_service.app.schemas import GenerationCreate, GenerationRead, GenerationResultRead

OPEN_TASKS_RETRY_AFTER_SECONDS = 10


async def create_task(
    session: AsyncSession, settings: ImageSettings, owner_id: str, data: GenerationCreate
) -> GenerationRead:
    require_provider(settings)
    if await crud.count_unfinished_tasks(session, owner_id) >= settings.generation_max_open_per_user:
        raise RateLimited(
            OPEN_TASKS_RETRY_AFTER_SECONDS,
            f"You already have {settings.generation_max_open_per_user} unfinished generation tasks; "
            "wait for one to finish or cancel one",
        )
    task = GenerationTask(
        owner_id=owner_id,
        prompt=data.prompt,
        n=data.n,
        size=data.size or settings.image_default_size,
        status=TASK_PENDING,
        progress=0,
    )
    session.add(task)
    await session.flush()
    results = [GenerationResult(task_id=task.id, index=i, status=RESULT_PENDING, attempts=0) for i in range(data.n)]
    session.add_all(results)
    await session.commit()
    return GenerationRead.of(task, results)


async def read_task(session: AsyncSession, owner_id: str, task_id: str) -> GenerationRead:
    task = await crud.get_owned_task(session, owner_id, task_id)
    if task is None:
        raise NotFound("Generation task not found")
    results = await crud.results_of(session, [task.id])
    return GenerationRead.of(task, results[task.id])


async def task_page(session: AsyncSession, owner_id: str, offset: int, limit: int) -> Page[GenerationRead]:
    tasks, total = await crud.list_tasks(session, owner_id, offset, limit)
    results = await crud.results_of(session, [t.id for t in tasks])
    return page_of([GenerationRead.of(t, results[t.id]) for t in tasks], total, offset, limit)


async def cancel(session: AsyncSession, owner_id: str, task_id: str) -> GenerationRead:
    """Stop pending work. Cancelling a cancelled task is a no-op; a finished one is a 409."""
    task = await crud.get_owned_task(session, owner_id, task_id)
    if task is None:
        raise NotFound("Generation task not found")
    if task.status not in (*TASK_UNFINISHED, TASK_CANCELLED):
        raise Conflict(f"The task already finished ({task.status})")
    if task.status != TASK_CANCELLED:
        await crud.cancel_task(session, task)
        await session.commit()
        await session.refresh(task)
    return await read_task(session, owner_id, task_id)


async def rate(session: AsyncSession, owner_id: str, task_id: str, index: int, rating: int) -> GenerationResultRead:
    task = await crud.get_owned_task(session, owner_id, task_id)
    result = await crud.get_result(session, task.id, index) if task is not None else None
    if result is None:
        raise NotFound("Generation result not found")
    if result.status != RESULT_SUCCEEDED:
        raise Conflict(f"Only a succeeded result can be rated (this one is {result.status})")
    result.rating = rating
    await session.commit()
    return GenerationResultRead.of(result)
