"""What the app factory's lifespan puts on a FastAPI service's ``app.state`` (settings, database,
Redis, the clients of other services), read through typed getters: the one place that knows the
attribute names and says, in the error shape of docs/api.md §4, what is missing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common.errors import ServiceUnavailable

if TYPE_CHECKING:  # only for the annotations: common.security imports this module
    import redis.asyncio as aioredis

    from common.api_clients import ServiceClient
    from common.config import Settings
    from common.database import Database


def settings_of(app: Any) -> Settings:
    return app.state.settings


def database_of(app: Any) -> Database:
    db: Database | None = getattr(app.state, "db", None)
    if db is None:
        raise ServiceUnavailable("The database is not open (the service is starting or stopping)")
    return db


def redis_of(app: Any) -> aioredis.Redis:
    redis: aioredis.Redis | None = getattr(app.state, "redis", None)
    if redis is None:
        raise ServiceUnavailable("Redis is not configured; set REDIS_URL")
    return redis


def client_of(app: Any, service: str) -> ServiceClient:
    clients: dict[str, ServiceClient] = getattr(app.state, "clients", {})
    if service not in clients:
        raise ServiceUnavailable(f"{service} is not configured for this service")
    return clients[service]
