"""Fixed-window counters in Redis, shared by every replica (login attempts, per-user request rates).

A hit is counted atomically with its window in one MULTI/EXEC transaction:
``SET key 0 EX window NX`` (starts the window on the first hit), ``INCR key`` (keeps the TTL) and
``TTL key``. No check-then-count: callers count first and decide on the returned count, so
concurrent requests cannot all slip under the limit. Portable: no ``EXPIRE ... NX`` (Redis 7
only) and no Lua, so it runs on any Redis since 2.6.12 and on fakeredis.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from common.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Hit:
    """The count in the current window, this hit included, and the seconds until the window ends."""

    count: int
    retry_after: int


async def hit(redis: aioredis.Redis, key: str, window_seconds: int) -> Hit:
    """Count one hit in the window that starts with the first hit."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=window_seconds, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = await pipe.execute()
    if int(ttl) < 0:  # a key left without an expiry (written by something else): never block forever
        await redis.expire(key, window_seconds)
        ttl = window_seconds
    return Hit(count=int(count), retry_after=max(1, int(ttl)))


async def count_hit(redis: aioredis.Redis, key: str, window_seconds: int) -> int:
    """``hit`` returning the count only."""
    return (await hit(redis, key, window_seconds)).count


async def enforce(redis: aioredis.Redis, key: str, limit: int, window_seconds: int, what: str) -> None:
    """Count a request and raise 429 with ``Retry-After`` once ``limit`` per window is passed."""
    counted = await hit(redis, key, window_seconds)
    if counted.count > limit:
        raise RateLimited(counted.retry_after, f"Rate limit for {what} exceeded: {limit} per {window_seconds} s")
