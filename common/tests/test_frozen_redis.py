"""A Redis that accepts connections and never answers (frozen with SIGSTOP, partitioned) makes
each command fail within about a second instead of hanging the request (docs/api.md §9)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import RedisError

from common.cache import create_redis, redis_timeouts


@pytest.fixture
def frozen_redis_url() -> Iterator[str]:
    """A listening socket whose accepted connections are held open and never read or answered."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


async def test_a_frozen_redis_fails_the_async_command_instead_of_hanging(frozen_redis_url: str) -> None:
    client = create_redis(frozen_redis_url)
    try:
        # Before the fix the same call waited 4-8 s; the bound is loose on purpose (a loaded machine).
        with pytest.raises(RedisError):
            await asyncio.wait_for(client.get("any-key"), timeout=3.0)
    finally:
        await client.aclose()


def test_a_frozen_redis_fails_the_flask_command_instead_of_hanging(frozen_redis_url: str) -> None:
    client = redis.Redis.from_url(frozen_redis_url, **redis_timeouts())
    result: list[BaseException | None] = []

    def call() -> None:
        try:
            client.get("any-key")
            result.append(None)
        except BaseException as exc:
            result.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=3.0)
    assert result, "the command was still waiting on the frozen Redis"
    assert isinstance(result[0], RedisError)
    client.close()
