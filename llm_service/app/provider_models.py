"""The provider's model list, cached briefly in Redis (shared by every replica)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.llm_client import LLMClient

MODELS_CACHE_KEY = "llm:models"


async def provider_models(
    llm: LLMClient, redis: aioredis.Redis, cache_seconds: int, *, probe_timeout: float | None = None
) -> list[dict[str, Any]]:
    """The provider's models (``id``, ``object``, ``created``, ``owned_by``), at most ``cache_seconds`` old."""
    # The cache only saves a provider call: with Redis down the provider is asked directly, so
    # /ready reports Redis and the provider each for what they are.
    try:
        cached = await redis.get(MODELS_CACHE_KEY)
    except RedisError:
        cached = None
    if cached:
        return json.loads(cached)
    models = await llm.list_models(probe_timeout=probe_timeout)
    if cache_seconds > 0:
        with contextlib.suppress(RedisError):
            await redis.set(MODELS_CACHE_KEY, json.dumps(models), ex=cache_seconds)
    return models


def with_default_model(models: list[dict[str, Any]], default_model: str) -> list[dict[str, Any]]:
    """``models`` with ``LLM_MODEL`` first when the provider does not list it (the canned upstream,
    a provider alias): chat and text tasks use it, so a client choosing from the list may too."""
    if any(m.get("id") == default_model for m in models):
        return models
    return [{"id": default_model, "object": "model", "created": None, "owned_by": None}, *models]
