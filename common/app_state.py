"""What a FastAPI service's lifespan opens, as one typed ``State`` (settings, database, Redis, the
clients of other services; each service adds its own keys in a subclass). The lifespan yields it,
Starlette hands a copy to every request (``request.state``), and the typed getters below are the
one place that reads it and says, in the error shape of docs/api.md §4, what is missing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from common.errors import ServiceUnavailable

if TYPE_CHECKING:  # only for the annotations: common.security imports this module
    import redis.asyncio as aioredis
    from starlette.requests import HTTPConnection

    from common.api_clients import ServiceClient
    from common.config import Settings
    from common.database import Database


class State(TypedDict):
    settings: Settings
    db: Database | None
    redis: aioredis.Redis | None
    clients: dict[str, ServiceClient]


def _state(conn: HTTPConnection) -> dict[str, Any]:
    # Before the lifespan ran (or after it ended) a request's state holds none of these keys.
    return conn.scope.get("state") or {}


def settings_of(conn: HTTPConnection) -> Settings:
    settings: Settings | None = _state(conn).get("settings")
    if settings is None:
        raise ServiceUnavailable("The service is starting or stopping")
    return settings


def database_of(conn: HTTPConnection) -> Database:
    db: Database | None = _state(conn).get("db")
    if db is None:
        raise ServiceUnavailable("The database is not open (the service is starting or stopping)")
    return db


def redis_of(conn: HTTPConnection) -> aioredis.Redis:
    redis: aioredis.Redis | None = _state(conn).get("redis")
    if redis is None:
        raise ServiceUnavailable("Redis is not configured; set REDIS_URL")
    return redis


def client_of(conn: HTTPConnection, service: str) -> ServiceClient:
    clients: dict[str, ServiceClient] = _state(conn).get("clients") or {}
    if service not in clients:
        raise ServiceUnavailable(f"{service} is not configured for this service")
    return clients[service]


def extra_of(conn: HTTPConnection, key: str) -> Any:
    """A service's own lifespan key (e.g. image_service's ``images``); 503 while it is not open."""
    state = _state(conn)
    if key not in state:
        raise ServiceUnavailable("The service is starting or stopping")
    return state[key]
