"""Redis access through redis-py's asyncio client (docs/api.md §9).

The client reconnects by itself: when Redis goes away, calls raise ``redis.exceptions``
errors that the app factory answers with 503 ``service_unavailable``; when it returns, the next
call works again. Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.redaction import redact_url

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


# Per process. redis-py's pool raises "Too many connections" (→ 503) past this many commands in
# flight at once instead of waiting; its BlockingConnectionPool waits but cost ~25 % more CPU per
# command (measured: 169 vs 134 us per MGET at 64 concurrent), so the cap is set high instead.
REDIS_MAX_CONNECTIONS = 1024


# A Redis that accepts connections but does not answer (frozen, partitioned) must cost a request
# under a second (docs/api.md §9): at most one health-check PING and one command, each within this wait.
REDIS_SOCKET_TIMEOUT_SECONDS = 0.45


def redis_timeouts() -> dict[str, float]:
    """The socket timeouts of every Redis client of the suite, async and sync (Flask) alike."""
    return {"socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS, "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS}


def create_redis(url: str, max_connections: int = REDIS_MAX_CONNECTIONS) -> aioredis.Redis:
    """A pooled client with short timeouts so a dead Redis fails fast instead of hanging requests."""
    pool = aioredis.ConnectionPool.from_url(
        url,
        max_connections=max_connections,
        decode_responses=True,
        health_check_interval=15,
        # A dropped connection (Redis restarted) is retried once; a timeout is not, so that a
        # frozen Redis is not waited for twice.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1, supported_errors=(RedisConnectionError,)),
        **redis_timeouts(),
    )
    return aioredis.Redis.from_pool(pool)


# One MGET carries at most this many keys; a larger batch is split.
COALESCED_MGET_MAX_KEYS = 1024


class CoalescedMget:
    """MGETs issued by concurrent requests of one event loop, sent as one round trip.

    Every authenticated request reads its token's revocation state (docs/api.md §5). One MGET per
    request cost ~330 us of CPU per request at 64 in flight (redis-py's pool, a socket write and
    a wake-up each; ``bench/bench_records.py``), a third of a record read. Here the keys asked
    for during one turn of the event loop are collected and sent as one MGET on the next turn
    (the "auto-pipelining" of other Redis clients): each caller still gets the values Redis held
    after its request arrived, and a Redis error reaches every caller of that batch.
    """

    def __init__(self, redis: aioredis.Redis, max_keys: int = COALESCED_MGET_MAX_KEYS) -> None:
        # Weak: the registry below maps clients to coalescers, and a strong reference back
        # would keep every client (and its pool and loop) alive for good.
        self._redis = weakref.ref(redis)
        self.max_keys = max_keys
        self._loop = asyncio.get_running_loop()
        self._pending: list[tuple[Sequence[str], asyncio.Future[list[str | None]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def mget(self, *keys: str) -> list[str | None]:
        future: asyncio.Future[list[str | None]] = self._loop.create_future()
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append((keys, future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        while batch:
            size, cut = 0, 0
            while cut < len(batch) and (cut == 0 or size + len(batch[cut][0]) <= self.max_keys):
                size += len(batch[cut][0])
                cut += 1
            task = self._loop.create_task(self._send(batch[:cut]))
            self._tasks.add(task)  # a running task must stay referenced
            task.add_done_callback(self._tasks.discard)
            batch = batch[cut:]

    async def _send(self, batch: list[tuple[Sequence[str], asyncio.Future[list[str | None]]]]) -> None:
        keys = [key for wanted, _ in batch for key in wanted]
        try:
            redis = self._redis()
            if redis is None:
                raise RedisConnectionError("the Redis client was closed and released")
            values = await redis.mget(keys)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for wanted, future in batch:
            if not future.done():  # the caller may have been cancelled meanwhile
                future.set_result(values[start : start + len(wanted)])
            start += len(wanted)


_coalescers: weakref.WeakKeyDictionary[aioredis.Redis, CoalescedMget] = weakref.WeakKeyDictionary()


async def coalesced_mget(redis: aioredis.Redis, *keys: str) -> list[str | None]:
    """``redis.mget(*keys)``, batched with the MGETs of other requests in flight (see
    ``CoalescedMget``). For hot per-request reads; writes and read-modify-write stay direct."""
    coalescer = _coalescers.get(redis)
    if coalescer is None or coalescer._loop is not asyncio.get_running_loop():
        coalescer = _coalescers[redis] = CoalescedMget(redis)
    return await coalescer.mget(*keys)


def redis_unavailable_detail(url: str) -> str:
    return (
        f"Redis is unreachable at {redact_url(url)}; start Redis or set REDIS_URL "
        "(the launcher provides a local one when REDIS_URL is unset)"
    )
