"""Typed dependency aliases, declared once, so routes read like sentences."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from common.config import Settings
from common.errors import ServiceUnavailable
from common.security import AdminUser, CurrentUser, TokenUser

__all__ = ["AdminUser", "CurrentUser", "RedisDep", "SessionDep", "SettingsDep", "TokenUser", "client_address"]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.db.session() as session:
        yield session


def get_redis(request: Request) -> aioredis.Redis:
    redis = request.app.state.redis
    if redis is None:
        raise ServiceUnavailable("Redis is not configured; set REDIS_URL")
    return redis


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


SessionDep = Annotated[AsyncSession, Depends(get_session)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
