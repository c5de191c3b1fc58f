"""Durable background work in the database: rows are units of work, claimed by workers with a
compare-and-set lease, so several replicas never work the same row at once.

- ``LeasedTable``: the lease statements over one table (an owner column and an expiry column).
  A row is claimable while it is still work (``is_work(now)``) and nobody holds a live lease on it;
  a claim is one conditional UPDATE, so of two workers racing for a row exactly one wins. A worker
  whose process died loses its rows once their leases expire, or at once when it restarts under
  the same worker id (``release_all`` at start-up).
- ``LeaseWorkers``: the claim loop of one process. It polls (or is woken by ``notify``), claims up
  to ``max_active`` rows and runs ``work(row_id)`` for each as an asyncio task. ``work`` keeps its
  lease alive (``LeasedTable.renew``, e.g. from a heartbeat) and hands it back in its final write
  (``LeasedTable.release``); it raises ``LeaseLost`` when another worker took the row meanwhile.

Image generation tasks (image_service) are the first user.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from common.database import Database, utcnow

logger = logging.getLogger(__name__)

LeaseColumn = QueryableAttribute[Any] | ColumnElement[Any]


class LeaseLost(Exception):
    """Another worker holds the row now; stop without touching it."""


def _updated_entity(column: LeaseColumn) -> Any:
    """What an UPDATE of ``column``'s rows targets: the mapped class (an ORM update, which applies
    the model's ``onupdate`` defaults and keeps loaded objects in step) or the Core table."""
    if isinstance(column, QueryableAttribute):
        return column.class_
    return column.table  # type: ignore[attr-defined]


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


@dataclass(eq=False)
class LeasedTable:
    """The lease statements over one table whose rows are units of work.

    ``is_work(now)`` says which rows still need a worker; ``order_by`` which are claimed first."""

    id_column: LeaseColumn
    owner_column: LeaseColumn
    expires_column: LeaseColumn
    _: KW_ONLY
    is_work: Callable[[datetime], ColumnElement[bool]]
    order_by: ColumnElement[Any] | QueryableAttribute[Any]

    def __post_init__(self) -> None:
        self._entity = _updated_entity(self.id_column)

    def _unleased(self, now: datetime) -> ColumnElement[bool]:
        """Nobody holds a live lease on the row at ``now``."""
        return or_(self.expires_column.is_(None), self.expires_column < now)

    def _update(self) -> Update:
        return update(self._entity)

    async def claimable_ids(self, session: AsyncSession, now: datetime, limit: int) -> list[Any]:
        """Ids of work rows with no live lease, in ``order_by`` order (a read; no commit)."""
        rows = await session.execute(
            select(self.id_column).where(self.is_work(now), self._unleased(now)).order_by(self.order_by).limit(limit)
        )
        return [row[0] for row in rows]

    async def try_claim(
        self, session: AsyncSession, row_id: Any, worker_id: str, now: datetime, until: datetime
    ) -> bool:
        """Compare-and-set claim: wins only if the row is still work and nobody holds a live lease
        on it (safe across replicas). Commits."""
        result = await session.execute(
            self._update()
            .where(self.id_column == row_id, self.is_work(now), self._unleased(now))
            .values({self.owner_column: worker_id, self.expires_column: until})
        )
        await session.commit()
        return _rowcount(result) == 1

    async def renew(self, session: AsyncSession, row_id: Any, worker_id: str, until: datetime) -> bool:
        """Extend our lease to ``until``; False when another worker holds the row now or it is no
        longer work (e.g. cancelled meanwhile). Commits."""
        result = await session.execute(
            self._update()
            .where(self.id_column == row_id, self.owner_column == worker_id, self.is_work(utcnow()))
            .values({self.expires_column: until})
        )
        await session.commit()
        return _rowcount(result) == 1

    async def release(self, session: AsyncSession, row_id: Any, worker_id: str) -> None:
        """Hand our lease on the row back. Does NOT commit: it belongs to the caller's final write."""
        await session.execute(
            self._update()
            .where(self.id_column == row_id, self.owner_column == worker_id)
            .values({self.owner_column: None, self.expires_column: None})
        )

    async def release_all(self, session: AsyncSession, worker_id: str) -> int:
        """At start-up and stop: hand back every lease held under ``worker_id`` on rows that are
        still work (at start-up they belong to a dead predecessor with the same id); other workers'
        leases are untouched. Answers how many were released. Commits."""
        result = await session.execute(
            self._update()
            .where(self.owner_column == worker_id, self.is_work(utcnow()))
            .values({self.owner_column: None, self.expires_column: None})
        )
        await session.commit()
        return _rowcount(result)


class LeaseWorkers(abc.ABC):
    """A claim loop: polls (or is woken), claims up to ``max_active`` rows, runs ``work(row_id)``
    for each as an asyncio task; releases its own leases on start (a dead predecessor's) and on
    stop. ``name`` names one unit of work in logs and task names (e.g. ``"generation task"``)."""

    def __init__(
        self,
        db: Database,
        table: LeasedTable,
        *,
        worker_id: str,
        max_active: int,
        poll_seconds: float,
        lease_seconds: float,
        name: str,
    ) -> None:
        # How many rows at once, how often to look for more, how long a lease lasts untouched.
        self.max_active, self.poll_seconds, self.lease_seconds = max_active, poll_seconds, lease_seconds
        self.db = db
        self.table = table
        self.worker_id = worker_id
        self.name = name
        self.wake = asyncio.Event()
        self.active: dict[Any, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def work(self, row_id: Any) -> None:
        """Work one claimed row to its end. Exceptions are logged and the loop goes on; raise
        ``LeaseLost`` when another worker took the row meanwhile (logged as a warning)."""

    async def start(self) -> None:
        """Free the leases a dead predecessor left under this worker id, then start claiming."""
        async with self.db.session() as session:
            released = await self.table.release_all(session, self.worker_id)
        if released:
            logger.info("resuming %d %s(s) left by a previous run of %s", released, self.name, self.worker_id)
        self._loop = asyncio.create_task(self._claim_loop(), name=f"{self._slug}-claim-loop")

    def notify(self) -> None:
        """New work was created here: claim it now instead of on the next poll."""
        self.wake.set()

    async def stop(self) -> None:
        """Stop claiming, stop the running work and hand its leases back for the next start."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        runs = list(self.active.values())
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        async with self.db.session() as session:
            await self.table.release_all(session, self.worker_id)

    def lease_until(self) -> datetime:
        """The expiry of a lease taken or renewed now."""
        return utcnow() + timedelta(seconds=self.lease_seconds)

    @property
    def _slug(self) -> str:
        return self.name.replace(" ", "-")

    async def _claim_loop(self) -> None:
        while True:
            try:
                await self._claim_available()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not kill the loop
                logger.exception("claiming %ss failed", self.name)
            await self._wait_for_wake()

    async def _wait_for_wake(self) -> None:
        """Until ``notify`` (or a finished row) or the next poll. Not ``asyncio.wait_for``: on
        Python 3.11 it swallows a cancel that arrives as the event is set, and ``stop`` would
        then wait forever for the loop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_seconds):
                await self.wake.wait()
        self.wake.clear()

    async def _claim_available(self) -> None:
        free = self.max_active - len(self.active)
        if free <= 0:
            return
        now = utcnow()
        async with self.db.session() as session:
            # Rows we work already may still look claimable (their lease just expired): ask for enough.
            candidates = await self.table.claimable_ids(session, now, free + len(self.active))
            for row_id in candidates:
                if free <= 0:
                    break
                if row_id in self.active:
                    continue
                if await self.table.try_claim(session, row_id, self.worker_id, now, self.lease_until()):
                    free -= 1
                    self.active[row_id] = asyncio.create_task(self._run(row_id), name=f"{self._slug}-{row_id}")

    async def _run(self, row_id: Any) -> None:
        try:
            await self.work(row_id)
        except asyncio.CancelledError:
            raise
        except LeaseLost:
            logger.warning("lost the lease of %s %s; leaving it to its new worker", self.name, row_id)
        except Exception:
            logger.exception("%s %s failed unexpectedly; its lease will expire", self.name, row_id)
        finally:
            self.active.pop(row_id, None)
            self.wake.set()
