"""In-process generation workers (docs/api.md §8): durable, bounded, resumable.

Each process runs one ``GenerationWorkers``, a ``common.leases.LeaseWorkers``: its claim loop takes
unfinished tasks from the database with a compare-and-set lease (``crud.task_leases`` over
``lease_owner``/``lease_expires_at``), so several replicas never work the same task, and a task
whose worker died is picked up again once its lease expires (at once by the same worker id after a
restart). While a task runs, its ``TaskRun``'s heartbeat renews the lease and notices a cancel made
through any replica. Each result is its own provider call, retried with backoff, and fails alone;
provider calls are bounded per process by a semaphore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from common.database import Database, utcnow
from common.errors import AppError
from common.leases import LeaseLost, LeaseWorkers
from common.models.image import (
    RESULT_PENDING,
    RESULT_RUNNING,
    RESULT_SUCCEEDED,
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_PARTIAL,
    TASK_SUCCEEDED,
    TASK_UNFINISHED,
    GenerationTask,
)
from image_service.app import crud
from image_service.app.config import ImageSettings
from image_service.app.images import ImageContext, discard_stored, store_generated
from image_service.app.provider import ImageProvider, ProviderError
from image_service.app.storage import StoreFailed, StoreUnavailable

logger = logging.getLogger(__name__)

# Progress counts results that reached an outcome; cancelled ones did not.
MAX_ERROR_CHARS = 500
MAX_RETRY_WAIT_SECONDS = 60.0


def default_worker_id(settings: ImageSettings) -> str:
    """Stable across restarts of one replica, distinct between replicas (host and port)."""
    return settings.generation_worker_id or f"{socket.gethostname()}:{settings.port}"


class GenerationWorkers(LeaseWorkers):
    """The claim loop of generation tasks and the tasks this process is working on."""

    def __init__(self, db: Database, images: ImageContext, provider: ImageProvider) -> None:
        settings = images.settings
        super().__init__(
            db,
            crud.task_leases,
            worker_id=default_worker_id(settings),
            max_active=settings.generation_max_tasks,
            poll_seconds=settings.generation_poll_seconds,
            lease_seconds=settings.generation_lease_seconds,
            name="generation task",
        )
        self.images = images
        self.provider = provider
        self.settings = settings
        self.calls = asyncio.Semaphore(settings.generation_max_calls)

    async def work(self, row_id: Any) -> None:
        await TaskRun(self, row_id).run()


class TaskRun:
    """Works one claimed task to its end (or until cancelled / the lease is lost)."""

    def __init__(self, workers: GenerationWorkers, task_id: str) -> None:
        self.workers = workers
        self.settings = workers.settings
        self.db = workers.db
        self.task_id = task_id
        self.owner_id = ""
        self.prompt = ""
        self.size = ""
        self.result_runs: list[asyncio.Task[None]] = []
        self.lease_lost = False

    async def run(self) -> None:
        pending = await self._begin()
        if pending is None:
            return
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"heartbeat-{self.task_id}")
        try:
            self.result_runs = [
                asyncio.create_task(self._work_result(index, attempts), name=f"result-{self.task_id}-{index}")
                for index, attempts in pending
            ]
            await asyncio.gather(*self.result_runs, return_exceptions=True)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if self.lease_lost:
            raise LeaseLost(self.task_id)
        await self._finish()

    async def _begin(self) -> list[tuple[int, int]] | None:
        """Mark the task running; results a dead worker left ``running`` go back to ``pending``.
        Returns (index, attempts so far) of the results to work, or None when there is nothing to do."""
        async with self.db.session() as session:
            task = await session.get(GenerationTask, self.task_id)
            if task is None or task.lease_owner != self.workers.worker_id or task.status not in TASK_UNFINISHED:
                return None
            self.owner_id, self.prompt, self.size = task.owner_id, task.prompt, task.size
            pending = await crud.start_task(session, self.task_id)
            await session.commit()
        logger.info("working generation task %s (%d result(s) to make)", self.task_id, len(pending))
        return pending

    async def _heartbeat(self) -> None:
        interval = max(0.2, self.settings.generation_lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.db.session() as session:
                    renewed = await self.workers.table.renew(
                        session, self.task_id, self.workers.worker_id, self.workers.lease_until()
                    )
                    if renewed:
                        continue
                    task = await session.get(GenerationTask, self.task_id)
            except Exception:  # a database hiccup: try again on the next beat, the lease has slack
                logger.warning("could not renew the lease of generation task %s", self.task_id, exc_info=True)
                continue
            if task is not None and task.status == TASK_CANCELLED:
                logger.info("generation task %s was cancelled; stopping its results", self.task_id)
            else:
                self.lease_lost = True
            for run in self.result_runs:
                run.cancel()
            return

    async def _work_result(self, index: int, attempts_so_far: int) -> None:
        max_attempts = self.settings.generation_max_attempts
        attempt = min(attempts_so_far + 1, max_attempts)
        while True:
            if not await self._mark_result_running(index, attempt):
                return  # cancelled meanwhile
            try:
                async with self.workers.calls:
                    data = await self.workers.provider.generate_one(self.prompt, self.size, index)
                await self._store_result(index, data)
                return
            except ProviderError as exc:
                if not exc.retryable or attempt >= max_attempts:
                    await self._fail_result(index, f"{exc} (attempt {attempt} of {max_attempts})")
                    return
                logger.info("result %s/%d attempt %d failed: %s; retrying", self.task_id, index, attempt, exc)
                backoff = self.settings.generation_backoff_seconds * 2 ** (attempt - 1)
                await asyncio.sleep(min(max(backoff, exc.retry_after), MAX_RETRY_WAIT_SECONDS))
                attempt += 1
            except (StoreUnavailable, StoreFailed) as exc:  # the store is down: worth another attempt
                if attempt >= max_attempts:
                    await self._fail_result(index, f"{exc.detail} (attempt {attempt} of {max_attempts})")
                    return
                logger.info(
                    "result %s/%d attempt %d not stored: %s; retrying", self.task_id, index, attempt, exc.detail
                )
                await asyncio.sleep(self.settings.generation_backoff_seconds * 2 ** (attempt - 1))
                attempt += 1
            except AppError as exc:  # the provider's bytes are not an acceptable image
                await self._fail_result(index, str(exc.detail))
                return
            except Exception:  # storage or database trouble: fail this result, not the whole task
                logger.exception("result %s/%d could not be stored", self.task_id, index)
                await self._fail_result(index, "internal error while storing the image")
                return

    async def _mark_result_running(self, index: int, attempt: int) -> bool:
        async with self.db.session() as session:
            marked = await crud.mark_result_running(session, self.task_id, index, attempt)
            await session.commit()
        return marked

    async def _store_result(self, index: int, data: bytes) -> None:
        storage = self.workers.images.storage
        scratch = storage.temp_file()
        try:
            await asyncio.to_thread(scratch.write_bytes, data)
            image, key = await store_generated(self.workers.images, self.owner_id, scratch, self.task_id)
        finally:
            scratch.unlink(missing_ok=True)
        # The image row and the result's "succeeded" commit together: no half-finished result.
        async with self.db.session() as session:
            session.add(image)
            if not await crud.succeed_result(session, self.task_id, index, image.id):
                await session.rollback()
                await discard_stored(storage, key)
                return
            await crud.update_progress(session, self.task_id)
            await session.commit()

    async def _fail_result(self, index: int, error: str) -> None:
        logger.warning("result %s/%d failed: %s", self.task_id, index, error)
        async with self.db.session() as session:
            await crud.fail_result(session, self.task_id, index, error[:MAX_ERROR_CHARS])
            await crud.update_progress(session, self.task_id)
            await session.commit()

    async def _finish(self) -> None:
        """Settle the task's status from its results and hand the lease back. Every write is a
        conditional UPDATE, so a cancel committed meanwhile through another request is never
        overwritten."""
        worker_id = self.workers.worker_id
        async with self.db.session() as session:
            statuses = await crud.result_statuses(session, self.task_id)
            final, values = _settlement(statuses)
            if await crud.settle_task(session, self.task_id, worker_id, values):
                await session.commit()
                if final is not None:
                    logger.info("generation task %s finished: %s", self.task_id, final)
                return
            await session.rollback()
            task = await session.get(GenerationTask, self.task_id)
            if task is None:
                return
            if task.status != TASK_CANCELLED:
                raise LeaseLost(self.task_id)
            # Cancelled: whatever was still unfinished is cancelled too; the lease is handed back.
            await crud.cancel_unfinished_results(session, self.task_id)
            await crud.update_progress(session, self.task_id)
            await self.workers.table.release(session, self.task_id, worker_id)
            await session.commit()
        logger.info("generation task %s cancelled", self.task_id)


def _settlement(statuses: list[str]) -> tuple[str | None, dict[str, object]]:
    """The task's final status from its results, and the values to write; (None, lease only)
    while a result is unfinished (cancel or shutdown: the next claim resumes it, if any)."""
    released: dict[str, object] = {"lease_owner": None, "lease_expires_at": None}
    if any(s in (RESULT_PENDING, RESULT_RUNNING) for s in statuses):
        return None, released
    succeeded = statuses.count(RESULT_SUCCEEDED)
    final = TASK_SUCCEEDED if succeeded == len(statuses) else TASK_PARTIAL if succeeded else TASK_FAILED
    now = utcnow()
    return final, {"status": final, "progress": 100, "finished_at": now, "updated_at": now, **released}
