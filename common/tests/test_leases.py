"""common.leases on a real database with a table of its own: compare-and-set claims between
racing workers, expiry, renewal, releases, and the claim loop working every row exactly once."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import MetaData, String, func, insert, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.database import Database, UTCDateTime, utcnow
from common.leases import LeasedTable, LeaseLost, LeaseWorkers

WAIT_SECONDS = 20.0


class JobBase(DeclarativeBase):
    """Test-only tables, apart from the application's metadata."""

    metadata = MetaData()


class Job(JobBase):
    __tablename__ = "lease_test_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


JOBS = LeasedTable(
    Job.id,
    Job.lease_owner,
    Job.lease_expires_at,
    is_work=lambda now: Job.status == "pending",
    order_by=Job.position,
)


@pytest.fixture
async def db_url(make_database_url: Callable[[], str]) -> AsyncIterator[str]:
    url = make_database_url()
    database = Database(url)
    async with database.engine.begin() as conn:
        await conn.run_sync(JobBase.metadata.create_all)
    await database.dispose()
    yield url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def other_db(db_url: str) -> AsyncIterator[Database]:
    """A second engine on the same database, as another replica would have."""
    database = Database(db_url)
    yield database
    await database.dispose()


async def add_jobs(db: Database, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    async with db.session() as session:
        await session.execute(insert(Job), [{"id": job_id, "position": n} for n, job_id in enumerate(ids)])
        await session.commit()
    return ids


async def jobs_by(db: Database, **where: Any) -> set[str]:
    async with db.session() as session:
        rows = await session.execute(select(Job.id).filter_by(**where))
        return set(rows.scalars())


async def claim(db: Database, job_id: str, worker_id: str, now: datetime, seconds: float = 60.0) -> bool:
    async with db.session() as session:
        return await JOBS.try_claim(session, job_id, worker_id, now, now + timedelta(seconds=seconds))


async def claimable(db: Database, now: datetime) -> list[str]:
    async with db.session() as session:
        return await JOBS.claimable_ids(session, now, 100)


async def renew(db: Database, job_id: str, worker_id: str) -> bool:
    async with db.session() as session:
        return await JOBS.renew(session, job_id, worker_id, utcnow() + timedelta(seconds=60))


async def release_all(db: Database, worker_id: str) -> int:
    async with db.session() as session:
        return await JOBS.release_all(session, worker_id)


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- LeasedTable


async def test_two_workers_racing_for_the_same_rows_never_both_claim_one(db: Database, other_db: Database) -> None:
    ids = await add_jobs(db, 20)
    now = utcnow()

    async def claim_all(database: Database, worker_id: str) -> set[str]:
        won = set()
        for job_id in await claimable(database, now):
            if await claim(database, job_id, worker_id, now):
                won.add(job_id)
            await asyncio.sleep(0)
        return won

    first, second = await asyncio.gather(claim_all(db, "w-a"), claim_all(other_db, "w-b"))
    assert not first & second
    assert first | second == set(ids)
    assert await jobs_by(db, lease_owner="w-a") == first
    assert await jobs_by(db, lease_owner="w-b") == second
    assert await claimable(db, now) == []


async def test_claimable_rows_come_in_order_and_exclude_finished_and_leased_ones(db: Database) -> None:
    ids = await add_jobs(db, 4)
    now = utcnow()
    assert await claim(db, ids[1], "w-a", now)
    async with db.session() as session:
        await session.execute(update(Job).where(Job.id == ids[2]).values(status="done"))
        await session.commit()
    assert await claimable(db, now) == [ids[0], ids[3]]
    assert not await claim(db, ids[2], "w-a", now)  # not work any more


async def test_an_expired_lease_is_claimable_again(db: Database) -> None:
    (job_id,) = await add_jobs(db, 1)
    now = utcnow()
    assert await claim(db, job_id, "w-a", now, seconds=5)
    assert not await claim(db, job_id, "w-b", now + timedelta(seconds=4))  # still live
    later = now + timedelta(seconds=6)
    assert await claimable(db, later) == [job_id]
    assert await claim(db, job_id, "w-b", later)
    assert await jobs_by(db, lease_owner="w-b") == {job_id}


async def test_renew_fails_after_another_worker_took_the_row(db: Database) -> None:
    (job_id,) = await add_jobs(db, 1)
    now = utcnow() - timedelta(minutes=10)
    assert await claim(db, job_id, "w-a", now, seconds=1)
    assert await claim(db, job_id, "w-b", now + timedelta(seconds=2))  # w-a's lease had expired
    assert not await renew(db, job_id, "w-a")
    assert await renew(db, job_id, "w-b")


async def test_renew_fails_once_the_row_is_no_longer_work(db: Database) -> None:
    (job_id,) = await add_jobs(db, 1)
    assert await claim(db, job_id, "w-a", utcnow())
    async with db.session() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(status="cancelled"))
        await session.commit()
    assert not await renew(db, job_id, "w-a")


async def test_release_all_frees_only_its_own_leases(db: Database) -> None:
    ids = await add_jobs(db, 3)
    now = utcnow()
    assert await claim(db, ids[0], "w-a", now)
    assert await claim(db, ids[1], "w-a", now)
    assert await claim(db, ids[2], "w-b", now)
    assert await release_all(db, "w-a") == 2
    assert await claimable(db, now) == [ids[0], ids[1]]
    assert await jobs_by(db, lease_owner="w-b") == {ids[2]}
    assert await release_all(db, "w-a") == 0


async def test_release_is_part_of_the_callers_final_write(db: Database) -> None:
    (job_id,) = await add_jobs(db, 1)
    assert await claim(db, job_id, "w-a", utcnow())
    async with db.session() as session:
        await JOBS.release(session, job_id, "w-b")  # not the holder: nothing changes
        await JOBS.release(session, job_id, "w-a")
        await session.rollback()  # the caller's write failed: the lease stays
    assert await jobs_by(db, lease_owner="w-a") == {job_id}
    async with db.session() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(status="done"))
        await JOBS.release(session, job_id, "w-a")
        await session.commit()
    assert await jobs_by(db, status="done", lease_owner=None) == {job_id}


# ---------------------------------------------------------------- LeaseWorkers


class JobWorkers(LeaseWorkers):
    """Marks each job done (and hands its lease back) in one write, after an optional wait."""

    def __init__(
        self, db: Database, worker_id: str, worked: Counter[str], *, lease_seconds: float = 30.0, hold: bool = False
    ) -> None:
        super().__init__(
            db,
            JOBS,
            worker_id=worker_id,
            max_active=3,
            poll_seconds=0.05,
            lease_seconds=lease_seconds,
            name="test job",
        )
        self.worked = worked
        self.started: Counter[str] = Counter()
        self.hold = hold
        self.fail_once: set[str] = set()
        self.lose: set[str] = set()

    async def work(self, row_id: Any) -> None:
        self.started[row_id] += 1
        if row_id in self.lose:
            raise LeaseLost(row_id)
        if row_id in self.fail_once:
            self.fail_once.discard(row_id)
            raise RuntimeError("boom")
        await asyncio.sleep(3600 if self.hold else 0.01)
        async with self.db.session() as session:
            done = await session.execute(
                update(Job).where(Job.id == row_id, Job.lease_owner == self.worker_id).values(status="done")
            )
            await self.table.release(session, row_id, self.worker_id)
            await session.commit()
        if done.rowcount == 1:  # type: ignore[attr-defined]
            self.worked[row_id] += 1


async def count_pending(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Job).where(Job.status == "pending")) or 0)


async def _none_pending(db: Database) -> bool:
    return await count_pending(db) == 0


async def _active_count(workers: LeaseWorkers, count: int) -> bool:
    return len(workers.active) == count


async def _worked(worked: Counter[str], expected: set[str]) -> bool:
    return set(worked) >= expected


async def work_until_done(db: Database, *workers: LeaseWorkers) -> None:
    """Run the workers until no row is pending, then stop them."""
    await asyncio.gather(*(w.start() for w in workers))
    try:
        await wait_for(lambda: _none_pending(db))
    finally:
        await asyncio.gather(*(w.stop() for w in workers))


async def test_two_worker_instances_work_every_row_exactly_once(db: Database, other_db: Database) -> None:
    ids = await add_jobs(db, 30)
    worked: Counter[str] = Counter()
    first, second = JobWorkers(db, "w-a", worked), JobWorkers(other_db, "w-b", worked)
    await work_until_done(db, first, second)
    assert set(worked) == set(ids)
    assert set(worked.values()) == {1}
    assert sum((first.started + second.started).values()) == len(ids)  # no row was even started twice
    assert await jobs_by(db, lease_owner=None) == set(ids)


async def test_a_stopped_workers_rows_are_resumed_by_a_new_instance_with_the_same_id(db: Database) -> None:
    ids = await add_jobs(db, 5)
    worked: Counter[str] = Counter()
    stopped = JobWorkers(db, "w-a", worked, hold=True)
    await stopped.start()
    await wait_for(lambda: _active_count(stopped, 3))
    await stopped.stop()
    assert not worked and await count_pending(db) == 5
    assert await jobs_by(db, lease_owner=None) == set(ids)  # handed back on stop

    resumed = JobWorkers(db, "w-a", worked)
    await work_until_done(db, resumed)
    assert set(worked) == set(ids) and set(worked.values()) == {1}


async def test_a_dead_predecessors_live_leases_are_freed_at_start_under_the_same_id(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await add_jobs(db, 2)
    for job_id in ids:  # a process that died holding long leases
        assert await claim(db, job_id, "w-a", utcnow(), seconds=3600)
    worked: Counter[str] = Counter()
    stranger = JobWorkers(db, "w-b", worked)
    await stranger.start()
    await asyncio.sleep(0.3)  # several polls: the live leases are respected
    assert not stranger.started
    await stranger.stop()

    caplog.set_level(logging.INFO, logger="common.leases")
    restarted = JobWorkers(db, "w-a", worked)
    await work_until_done(db, restarted)
    assert set(worked) == set(ids)
    assert "resuming 2 test job(s) left by a previous run of w-a" in caplog.text


async def test_a_failing_row_is_logged_and_the_loop_goes_on(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    ids = await add_jobs(db, 4)
    worked: Counter[str] = Counter()
    workers = JobWorkers(db, "w-a", worked, lease_seconds=0.3)
    workers.fail_once.add(ids[0])
    workers.lose.add(ids[1])
    await workers.start()
    try:
        await wait_for(lambda: _worked(worked, {ids[0], ids[2], ids[3]}))
    finally:
        await workers.stop()
    assert workers.started[ids[0]] == 2  # failed, its lease expired, claimed again
    assert ids[1] not in worked
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"lost the lease of test job {ids[1]}" in r.getMessage() for r in warnings)
    assert any(f"test job {ids[0]} failed unexpectedly" in r.getMessage() for r in caplog.records)


async def test_stop_returns_even_when_the_loop_is_woken_as_it_stops(db: Database) -> None:
    # A wake-up landing in the same turn of the event loop as the cancel must not swallow it.
    for turns in range(6):
        workers = JobWorkers(db, f"w-{turns}", Counter())
        await workers.start()
        await asyncio.sleep(0.01)  # the loop is waiting for a wake-up
        workers.notify()
        for _ in range(turns):
            await asyncio.sleep(0)
        started = time.monotonic()
        async with asyncio.timeout(5):  # bounds a stuck stop; the cancel it sends would end it silently
            await workers.stop()
        assert time.monotonic() - started < 2.0, f"stop waited for the loop (woken {turns} turn(s) before)"
