"""Typed dependency aliases, declared once, so routes read like sentences."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from common.app_state import database_of, redis_of, settings_of
from common.config import Settings
from common.database import Database
from common.security import AdminUser, CurrentUser, TokenUser

__all__ = [
    "AdminUser",
    "CurrentUser",
    "DatabaseDep",
    "RedisDep",
    "SessionDep",
    "SettingsDep",
    "TokenUser",
    "client_address",
]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with database_of(request).session() as session:
        yield session


def get_database(request: Request) -> Database:
    return database_of(request)


def get_redis(request: Request) -> aioredis.Redis:
    return redis_of(request)


def get_settings(request: Request) -> Settings:
    return settings_of(request)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


SessionDep = Annotated[AsyncSession, Depends(get_session)]
DatabaseDep = Annotated[Database, Depends(get_database)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
