"""common.rate_limit: atomic fixed-window counting on a real Redis and on fakeredis (no Redis-7-only
commands), the window's expiry, and concurrent hits that cannot all slip under the limit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from fakeredis import FakeAsyncRedis, FakeServer

from common import rate_limit
from common.cache import create_redis
from common.errors import RateLimited


@pytest.fixture(params=["redis", "fakeredis"])
async def redis(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[aioredis.Redis]:
    if request.param == "redis":
        client = create_redis(redis_url)
    else:  # fakeredis emulating an older server: no EXPIRE ... NX there
        client = FakeAsyncRedis(server=FakeServer(version=(6, 2)), decode_responses=True)
    yield client
    await client.aclose()


def _key() -> str:
    return f"test:rate:{uuid.uuid4().hex}"


async def test_hits_count_up_within_one_window(redis: aioredis.Redis) -> None:
    key = _key()
    counts = [(await rate_limit.hit(redis, key, 60)).count for _ in range(3)]
    assert counts == [1, 2, 3]
    assert 0 < await redis.ttl(key) <= 60


async def test_the_window_starts_at_the_first_hit_and_is_not_extended(redis: aioredis.Redis) -> None:
    key = _key()
    await rate_limit.hit(redis, key, 60)
    await redis.expire(key, 5)  # the window is nearly over
    later = await rate_limit.hit(redis, key, 60)
    assert later.count == 2 and later.retry_after <= 5


async def test_a_new_window_starts_after_expiry(redis: aioredis.Redis) -> None:
    key = _key()
    await rate_limit.hit(redis, key, 60)
    await redis.delete(key)  # what the expiry does
    fresh = await rate_limit.hit(redis, key, 60)
    assert fresh.count == 1 and 55 <= fresh.retry_after <= 60


async def test_a_counter_without_expiry_gets_one(redis: aioredis.Redis) -> None:
    key = _key()
    await redis.set(key, 7)
    counted = await rate_limit.hit(redis, key, 30)
    assert counted.count == 8 and 0 < await redis.ttl(key) <= 30


async def test_concurrent_hits_get_distinct_counts(redis: aioredis.Redis) -> None:
    key = _key()
    hits = await asyncio.gather(*(rate_limit.hit(redis, key, 60) for _ in range(25)))
    assert sorted(h.count for h in hits) == list(range(1, 26))


async def test_enforce_raises_429_with_retry_after_past_the_limit(redis: aioredis.Redis) -> None:
    key = _key()
    for _ in range(3):
        await rate_limit.enforce(redis, key, 3, 60, "tests")
    with pytest.raises(RateLimited) as refused:
        await rate_limit.enforce(redis, key, 3, 60, "tests")
    assert 0 < refused.value.retry_after <= 60
    assert refused.value.headers["Retry-After"] == str(refused.value.retry_after)
    assert await rate_limit.count_hit(redis, key, 60) == 5
