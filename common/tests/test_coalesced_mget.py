"""``common.cache.coalesced_mget``: concurrent MGETs of one event loop share one round trip, and
each caller still gets its own, current answer (the revocation check of every request)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from common.cache import coalesced_mget, create_redis
from common.config import REPO_ROOT, Settings, load_settings
from common.processes import free_port
from common.security import encode_token, is_revoked, revoke_jti, revoke_user_tokens

SECRET = "unit-test-secret-0123456789abcdef-0123456789"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = create_redis(redis_url)
    yield redis
    await redis.aclose()


async def test_each_concurrent_caller_gets_its_own_values(client: aioredis.Redis) -> None:
    prefix = f"coalesce:{uuid.uuid4().hex}"
    await client.mset({f"{prefix}:{n}": str(n) for n in range(0, 60, 2)})  # even keys only

    def expected(n: int) -> str | None:
        return str(n) if n % 2 == 0 and n < 60 else None

    results = await asyncio.gather(
        *(coalesced_mget(client, f"{prefix}:{n}", f"{prefix}:{n + 1}", f"{prefix}:missing") for n in range(60))
    )
    assert results == [[expected(n), expected(n + 1), None] for n in range(60)]


async def test_concurrent_callers_share_one_connection(redis_url: str) -> None:
    # redis-py's pool refuses a second connection here ("Too many connections"): 40 requests
    # checking at once only pass if their MGETs travel as one command.
    single = create_redis(redis_url, max_connections=1)
    try:
        direct = await asyncio.gather(*(single.mget(f"direct:{n}") for n in range(40)), return_exceptions=True)
        refused = [result for result in direct if isinstance(result, RedisError)]
        assert refused and "Too many connections" in str(refused[0])
        results = await asyncio.gather(*(coalesced_mget(single, f"shared:{n}") for n in range(40)))
        assert results == [[None]] * 40
    finally:
        await single.aclose()


async def test_a_batch_larger_than_the_key_limit_is_split(client: aioredis.Redis) -> None:
    prefix = f"split:{uuid.uuid4().hex}"
    await client.mset({f"{prefix}:{n}": str(n) for n in range(3000)})
    results = await asyncio.gather(*(coalesced_mget(client, f"{prefix}:{n}") for n in range(3000)))
    assert [value for (value,) in results] == [str(n) for n in range(3000)]


async def test_a_cancelled_caller_does_not_disturb_the_others(client: aioredis.Redis) -> None:
    await client.set("cancel:kept", "yes")
    doomed = asyncio.ensure_future(coalesced_mget(client, "cancel:kept"))
    kept = asyncio.ensure_future(coalesced_mget(client, "cancel:kept"))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == ["yes"]
    assert doomed.cancelled()
    assert await coalesced_mget(client, "cancel:kept") == ["yes"]  # the next batch works too


async def test_redis_down_reaches_every_caller_of_the_batch() -> None:
    down = create_redis(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        results = await asyncio.gather(*(coalesced_mget(down, f"k{n}") for n in range(5)), return_exceptions=True)
        assert len(results) == 5
        assert all(isinstance(result, RedisConnectionError) for result in results)
    finally:
        await down.aclose()


async def test_revocations_in_one_batch_are_told_apart(client: aioredis.Redis) -> None:
    settings: Settings = load_settings(Settings, secret_key=SECRET)
    now = time.time()
    tokens = [encode_token(settings, str(uuid.uuid4()), "user", "access", now=now - 5)[1] for _ in range(30)]
    for claims in tokens[::3]:
        await revoke_jti(client, claims.jti, claims.exp)  # logged out
    for claims in tokens[1::3]:
        await revoke_user_tokens(client, settings, claims.sub)  # password changed after issue
    verdicts = await asyncio.gather(*(is_revoked(client, claims) for claims in tokens))
    assert verdicts == [n % 3 != 2 for n in range(30)]
    # A token issued after its user's cut-off counts again.
    fresh = encode_token(settings, tokens[1].sub, "user", "access", now=time.time() + 1)[1]
    assert await is_revoked(client, fresh) is False


LEAK_PROBE = """
import asyncio, gc
from common.cache import _coalescers, coalesced_mget, create_redis

async def once(url):
    client = create_redis(url)
    assert await coalesced_mget(client, "leak:probe") == [None]
    await client.aclose()

for _ in range(5):
    asyncio.run(once(URL))
gc.collect()
print(len(_coalescers))
"""


def test_closed_clients_are_not_kept_alive(redis_url: str) -> None:
    probe = LEAK_PROBE.replace("URL", repr(redis_url))
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
