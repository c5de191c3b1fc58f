"""The provider's model list, cached briefly in Redis (shared by every replica)."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from common.llm_client import LLMClient

MODELS_CACHE_KEY = "llm:models"


async def provider_models(
    llm: LLMClient, redis: aioredis.Redis, cache_seconds: int, *, probe_timeout: float | None = None
) -> list[dict[str, Any]]:
    """The provider's models (``id``, ``object``, ``created``, ``owned_by``), at most ``cache_seconds`` old."""
    cached = await redis.get(MODELS_CACHE_KEY)
    if cached:
        return json.loads(cached)
    models = await llm.list_models(probe_timeout=probe_timeout)
    if cache_seconds > 0:
        await redis.set(MODELS_CACHE_KEY, json.dumps(models), ex=cache_seconds)
    return models
