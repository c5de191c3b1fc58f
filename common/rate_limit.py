"""Fixed-window counters in Redis, shared by every replica (login failures, per-user request rates)."""

from __future__ import annotations

import redis.asyncio as aioredis

from common.errors import RateLimited


async def retry_after_if_blocked(redis: aioredis.Redis, key: str, limit: int) -> int | None:
    """Seconds to wait when ``key`` has reached ``limit`` in its window, else None."""
    count = await redis.get(key)
    if count is None or int(count) < limit:
        return None
    ttl = await redis.ttl(key)
    return max(1, ttl)


async def count_hit(redis: aioredis.Redis, key: str, window_seconds: int) -> int:
    """Count one hit in the window that starts with the first hit."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_seconds, nx=True)
        count, _ = await pipe.execute()
    return int(count)


async def enforce(redis: aioredis.Redis, key: str, limit: int, window_seconds: int, what: str) -> None:
    """Count a request and raise 429 with ``Retry-After`` once ``limit`` per window is passed."""
    count = await count_hit(redis, key, window_seconds)
    if count > limit:
        ttl = await redis.ttl(key)
        raise RateLimited(max(1, ttl), f"Rate limit for {what} exceeded: {limit} per {window_seconds} s")
