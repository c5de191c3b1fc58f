"""Typed dependency aliases, declared once, so routes read like sentences."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request, params
from sqlalchemy.ext.asyncio import AsyncSession

from common.app_state import database_of, redis_of, settings_of
from common.config import Settings
from common.database import Database
from common.errors import UnsupportedMediaType
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
    "require_json_body",
]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with database_of(request).session() as session:
        yield session


# Dependencies are ``async def`` even when they do no I/O: FastAPI runs a plain ``def`` dependency
# in its thread pool, a thread hop per dependency per request (measured in bench/README.md).
async def get_database(request: Request) -> Database:
    return database_of(request)


async def get_redis(request: Request) -> aioredis.Redis:
    return redis_of(request)


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters ignored (FastAPI's test)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def require_json_body(request: Request) -> None:
    """415 for a body declared as another media type on a route that takes JSON. Without it FastAPI
    validates the raw bytes of form data or text/plain and answers 422 "Input should be a valid
    dictionary". Every route of the factory's apps has it; form and multipart routes, routes
    without a body, empty bodies and bodies without a Content-Type (FastAPI's 422) are left alone.
    The body has been read already (FastAPI reads it before dependencies)."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    if body_field is None or isinstance(body_field.field_info, params.Form):
        return
    content_type = request.headers.get("content-type")
    if content_type is None or is_json_media_type(content_type) or not await request.body():
        return
    raise UnsupportedMediaType(
        "This endpoint takes a JSON body: send it with Content-Type: application/json "
        f"(this one came as '{content_type[:100]}')"
    )


SessionDep = Annotated[AsyncSession, Depends(get_session)]
DatabaseDep = Annotated[Database, Depends(get_database)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
