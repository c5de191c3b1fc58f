"""One user's heavy uploads do not stall everyone's: the decode pool lets each user hold at most
``IMAGE_DECODE_PER_USER`` of its workers (running or queued); the others stay free for the rest."""

from __future__ import annotations

import asyncio
import threading

from image_service.app.processing import DecodePool


def test_a_users_backlog_does_not_queue_ahead_of_another_users_image() -> None:
    async def scenario() -> tuple[list[str], int]:
        pool = DecodePool(workers=2, per_owner=1)
        release = threading.Event()
        finished: list[str] = []

        def heavy(name: str) -> str:
            release.wait(timeout=30)  # a long decode, held until the test lets it go
            finished.append(name)
            return name

        def tiny() -> str:
            finished.append("other user's png")
            return "tiny"

        try:
            backlog = [asyncio.create_task(pool.run(heavy, f"heavy {i}", owner="alice")) for i in range(5)]
            await asyncio.sleep(0)  # alice's jobs are all submitted before bob's
            tiny_done = await asyncio.wait_for(pool.run(tiny, owner="bob"), timeout=10)
            waiting = sum(not task.done() for task in backlog)
            release.set()
            await asyncio.gather(*backlog)
            assert tiny_done == "tiny"
            return finished, waiting
        finally:
            release.set()
            pool.close()

    finished, still_waiting = asyncio.run(scenario())
    # Bob's image was decoded while all five of Alice's were still unfinished.
    assert finished[0] == "other user's png"
    assert still_waiting == 5
    assert sorted(finished[1:]) == [f"heavy {i}" for i in range(5)]


def test_one_users_jobs_still_all_run_and_the_pool_forgets_them() -> None:
    async def scenario() -> list[int]:
        pool = DecodePool(workers=2, per_owner=1)
        try:
            results = await asyncio.gather(*(pool.run(pow, i, 2, owner="alice") for i in range(6)))
            assert pool._owners == {}  # no per-user state left behind
            return list(results)
        finally:
            pool.close()

    assert asyncio.run(scenario()) == [i * i for i in range(6)]
