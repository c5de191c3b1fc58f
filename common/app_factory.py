"""The one FastAPI app factory (docs/api.md §11).

Every FastAPI service is built by ``create_app``: CORS, docs/api.md §4 error shape for every error
(404/405/422/500 included), ``X-Request-ID`` accepted or made and returned, one access-log line per
request, a body-size limit, ``/health``, ``/ready`` and ``/metrics``, and a lifespan that opens and
closes the database, Redis and the inter-service clients.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import redis.exceptions
import sqlalchemy.exc
import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.api_clients import ServiceClient
from common.cache import create_redis, redis_unavailable_detail
from common.config import Settings
from common.database import Database
from common.errors import AppError, PayloadTooLarge, error_body
from common.logging_setup import request_id_var, setup_logging, user_id_var
from common.observability import (
    METRICS_CONTENT_TYPE,
    REQUEST_ID_HEADER,
    accept_or_make_request_id,
    metrics_payload,
    record_request,
)

logger = logging.getLogger(__name__)

Hook = Callable[[FastAPI], Awaitable[None]]
ReadyCheck = Callable[[FastAPI], Awaitable[None]]


class ReadyBody(BaseModel):
    """``GET /ready``: each dependency's check, ``ok`` or ``error: ...``."""

    status: Literal["ok", "degraded"]
    checks: dict[str, str]


class RequestContextMiddleware:
    """Pure ASGI middleware (keeps streaming intact): request id, body limit, access log, metrics."""

    def __init__(
        self, app: ASGIApp, service: str, max_body_bytes: int, body_limits: Mapping[tuple[str, str], int] | None = None
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.body_limits = dict(body_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1") or None
        request_id = accept_or_make_request_id(incoming)
        request_id_var.set(request_id)
        user_id_var.set("-")
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder = {"status": 500}
        limit = scope["state"].get(
            "max_body_bytes", self.body_limits.get((scope["method"], scope["path"]), self.max_body_bytes)
        )

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._send_error(send, request_id, PayloadTooLarge(f"Request body exceeds {limit} bytes"))
            self._log(scope, 413, started)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # fastapi.HTTPException passes through FastAPI's body parsing unchanged (an
                    # AppError would be turned into a 400 there); the handler maps it to 413.
                    raise HTTPException(413, f"Request body exceeds {limit} bytes")
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            self._log(scope, status_holder["status"], started)

    def _log(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        state = scope.get("state") or {}
        user_id = state.get("user_id") or user_id_var.get()
        record_request(
            self.service, scope["method"], template, scope["path"], status, time.perf_counter() - started, user_id
        )

    @staticmethod
    async def _send_error(send: Send, request_id: str, exc: AppError) -> None:
        response = JSONResponse(exc.body(request_id), status_code=exc.status_code, headers=exc.headers)
        response.headers[REQUEST_ID_HEADER] = request_id
        await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or request_id_var.get()


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route offers for this path (Starlette's 405 names only the first
    matching route's methods, e.g. ``GET`` for a path served by a GET and a PATCH route).
    Each method is probed through the router (included routers are matched lazily)."""
    base = {"type": "http", "path": request.scope["path"], "root_path": request.scope.get("root_path", "")}
    allowed = [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**base, "method": method, "headers": [], "query_string": b""})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to ``{"detail", "code", "request_id"}``."""

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(exc.body(request_id_of(request)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = error_body(exc.status_code, exc.detail, request_id_of(request))
        if exc.status_code == 401:
            body["code"] = "not_authenticated"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return JSONResponse(body, status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's detail list is kept, without echoing the input back (it may hold a password).
        errors = [{k: v for k, v in err.items() if k not in ("input", "url")} for err in exc.errors()]
        body = error_body(422, jsonable_encoder(errors), request_id_of(request), "validation_error")
        return JSONResponse(body, status_code=422)

    @app.exception_handler(redis.exceptions.RedisError)
    async def _redis_down(request: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
        settings: Settings = request.app.state.settings
        logger.warning("redis error: %s", type(exc).__name__)
        body = error_body(503, redis_unavailable_detail(settings.redis_url), request_id_of(request))
        return JSONResponse(body, status_code=503)

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def _database_error(request: Request, exc: sqlalchemy.exc.DBAPIError) -> JSONResponse:
        # PostgreSQL refuses NUL characters in text (SQLite stores them): bad input, not a crash.
        if "0x00" in str(exc.orig):
            body = error_body(400, "Text must not contain NUL (\\u0000) characters", request_id_of(request))
            return JSONResponse(body, status_code=400)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        body = error_body(500, "Internal server error", request_id_of(request))
        response = JSONResponse(body, status_code=500)
        response.headers[REQUEST_ID_HEADER] = request_id_of(request)
        return response


def cors_options(settings: Settings) -> dict[str, Any]:
    """CORSMiddleware options from ``CORS_ORIGINS`` (the app and the forwarding proxy share them)."""
    return {
        "allow_origins": settings.cors_origin_list,
        "allow_credentials": True,
        "allow_methods": ["*"],
        "allow_headers": ["*"],
        "expose_headers": [REQUEST_ID_HEADER],
    }


def create_app(
    settings: Settings,
    *,
    title: str,
    description: str = "",
    routers: Sequence[APIRouter] = (),
    use_database: bool = True,
    use_redis: bool = True,
    upstreams: Sequence[str] = (),
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    ready_checks: dict[str, ReadyCheck] | None = None,
    body_limits: Mapping[tuple[str, str], int] | None = None,
    configure_logging: bool = True,
) -> FastAPI:
    """Build a service's FastAPI app. ``upstreams`` names the suite services it calls
    (e.g. ``["llm_service"]``); each gets a ``ServiceClient`` in ``app.state.clients``.
    ``body_limits`` raises the body limit of single routes, by (method, path), above
    ``MAX_BODY_BYTES`` (uploads); every other route keeps the common one."""
    if configure_logging:
        setup_logging(settings.service_name, settings.log_level, settings.log_format or "console", settings.log_dir)
    extra_checks = dict(ready_checks or {})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        app.state.db = Database(settings.database_url) if use_database else None
        app.state.redis = create_redis(settings.redis_url) if use_redis else None
        app.state.clients = {
            name: ServiceClient(
                name,
                getattr(settings, f"{name}_url"),
                timeout=settings.upstream_timeout_seconds,
                connect_timeout=settings.upstream_connect_timeout_seconds,
            )
            for name in upstreams
        }
        if app.state.db is not None:
            await app.state.db.create_all()
        for hook in on_startup:
            await hook(app)
        logger.info("%s ready on %s:%s", settings.service_name, settings.host, settings.port)
        try:
            yield
        finally:
            for hook in reversed(on_shutdown):
                try:
                    await hook(app)
                except Exception:
                    logger.exception("shutdown hook failed")
            for client in app.state.clients.values():
                await client.aclose()
            if app.state.redis is not None:
                await app.state.redis.aclose()
            if app.state.db is not None:
                await app.state.db.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version=settings.version,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.settings = settings
    app.state.db = None
    app.state.redis = None
    app.state.clients = {}
    install_error_handlers(app)
    if settings.cors_origin_list:
        app.add_middleware(CORSMiddleware, **cors_options(settings))
    app.add_middleware(
        RequestContextMiddleware,
        service=settings.service_name,
        max_body_bytes=settings.max_body_bytes,
        body_limits=body_limits,
    )

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name, "version": settings.version}

    @app.get(
        "/ready",
        tags=["ops"],
        response_model=ReadyBody,
        responses={503: {"model": ReadyBody, "description": "A dependency is down: its check says which"}},
    )
    async def ready(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        state = request.app.state
        probes: dict[str, Callable[[], Awaitable[Any]]] = {}
        if state.db is not None:
            probes["database"] = state.db.ping
        if state.redis is not None:
            probes["redis"] = state.redis.ping
        for name, client in state.clients.items():
            probes[name] = client.health
        for name, check in extra_checks.items():
            probes[name] = lambda check=check: check(request.app)
        for name, probe in probes.items():
            try:
                await probe()
                checks[name] = "ok"
            except Exception as exc:  # a readiness probe reports, it never raises
                checks[name] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(metrics_payload(), media_type=METRICS_CONTENT_TYPE)

    for router in routers:
        app.include_router(router)
    return app


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How every FastAPI service runs under uvicorn: HOST/PORT, graceful shutdown, and
    X-Forwarded-For believed only from ``TRUSTED_PROXIES`` (uvicorn's ``forwarded_allow_ips``;
    default 127.0.0.1, i.e. mobile_service/web_service on the same machine)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.trusted_proxies,
        "server_header": False,
    }


def tune_garbage_collector(gen0_threshold: int) -> None:
    """Collector settings for a long-running server process, applied once before it serves.

    With 64 requests in flight, each request's short-lived objects outlive a few of the
    collector's generation-0 passes (every 700 allocations by default), so the collector kept
    walking the graphs of every request in flight: measured ~100 us of CPU per record read
    (``bench/bench_records.py``, ~20 % of it). The start-up heap (modules, routes, schemas) is
    frozen out of the collector's walks, and generation 0 is collected every ``gen0_threshold``
    allocations instead; reference counting still frees almost everything at once, so memory
    stays flat. 0 keeps Python's defaults."""
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def serve(app: FastAPI, settings: Settings) -> None:
    """Run a service with uvicorn on its HOST/PORT; SIGTERM lets in-flight requests finish."""
    tune_garbage_collector(settings.gc_gen0_threshold)
    uvicorn.run(app, **uvicorn_options(settings))
