"""The one FastAPI app factory (docs/api.md §11).

Every FastAPI service is built by ``create_app``: CORS, docs/api.md §4 error shape for every error
(404/405/422/500 included), ``X-Request-ID`` accepted or made and returned, one access-log line per
request, a body-size limit, ``/health``, ``/ready`` and ``/metrics``, and a lifespan that opens and
closes the database, Redis and the inter-service clients.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.api_clients import ServiceClient
from common.app_state import State
from common.cache import create_redis
from common.config import Settings
from common.database import Database
from common.deps import require_json_body
from common.errors import PayloadTooLarge
from common.exception_handlers import ErrorShaper, ErrorShapes, install_error_handlers
from common.logging_setup import request_id_var, setup_logging, user_id_var
from common.observability import (
    METRICS_CONTENT_TYPE,
    REQUEST_ID_HEADER,
    accept_or_make_request_id,
    metrics_payload,
    record_request,
)
from common.readiness import READY_RESPONSES, ReadyBody, check_all

logger = logging.getLogger(__name__)

# Hooks and /ready checks get the lifespan's State (a service's subclass of it): startup hooks add
# the service's own keys to it, shutdown hooks close them.
Hook = Callable[[Any], Awaitable[None]]
ReadyCheck = Callable[[Any], Awaitable[None]]
# /docs keeps the token pasted into "Authorize" across reloads.
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"persistAuthorization": True}


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """A route's own body limit and the sentence its 413 says (e.g. "Images are limited to 10 MB")."""

    max_bytes: int
    detail: str


class RequestContextMiddleware:
    """Pure ASGI middleware (keeps streaming intact): request id, body limit, access log, metrics."""

    def __init__(
        self,
        app: ASGIApp,
        service: str,
        max_body_bytes: int,
        body_limits: Mapping[tuple[str, str], BodyLimit] | None = None,
        error_shapes: ErrorShapes | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.default_limit = BodyLimit(max_body_bytes, f"Request body exceeds {max_body_bytes} bytes")
        self.body_limits = dict(body_limits or {})
        self.error_shapes = error_shapes or ErrorShapes()

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
        body_limit = self.body_limits.get((scope["method"], scope["path"]), self.default_limit)
        limit = body_limit.max_bytes

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self.error_shapes.send(send, scope["path"], request_id, PayloadTooLarge(body_limit.detail))
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
                    raise HTTPException(413, body_limit.detail)
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
    body_limits: Mapping[tuple[str, str], BodyLimit] | None = None,
    error_shapes: Mapping[str, ErrorShaper] | None = None,
    configure_logging: bool = True,
    published_openapi: Callable[[], dict[str, Any]] | None = None,
) -> FastAPI:
    """Build a service's FastAPI app. ``upstreams`` names the suite services it calls
    (e.g. ``["llm_service"]``); each gets a ``ServiceClient`` in the State's ``clients``.
    ``body_limits`` raises the body limit of single routes, by (method, path), above
    ``MAX_BODY_BYTES`` (uploads); every other route keeps the common one. ``error_shapes`` gives
    the paths under a prefix another API's error body (llm_service: OpenAI's under ``/v1/``).
    Every route that takes a JSON body refuses any other body with 415 (``require_json_body``).
    ``published_openapi`` gives the document that ``/openapi.json`` and ``/docs`` publish when it
    is more than the app's own (mobile_service adds the routes it forwards); ``app.openapi()``
    stays the app's own operations either way."""
    if configure_logging:
        setup_logging(settings.service_name, settings.log_level, settings.log_format or "console", settings.log_dir)
    resources = AppResources(settings, use_database, use_redis, tuple(upstreams), tuple(on_startup), tuple(on_shutdown))
    app = FastAPI(
        title=title,
        description=description,
        version=settings.version,
        lifespan=resources.lifespan,
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        dependencies=[Depends(require_json_body)],
        **({"openapi_url": None, "docs_url": None, "redoc_url": None} if published_openapi else {}),
    )
    if published_openapi is not None:
        install_docs_routes(app, published_openapi)
    shapes = ErrorShapes(error_shapes)
    install_error_handlers(app, shapes)
    install_middleware(app, settings, body_limits, shapes)
    install_ops_routes(app, settings, dict(ready_checks or {}))
    for router in routers:
        app.include_router(router)
    return app


@dataclass(frozen=True)
class AppResources:
    """What a service's lifespan opens (database, Redis, clients of other services, its own
    hooks) and closes again, in reverse order, even when a hook fails."""

    settings: Settings
    use_database: bool
    use_redis: bool
    upstreams: tuple[str, ...]
    on_startup: tuple[Hook, ...]
    on_shutdown: tuple[Hook, ...]

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[State]:
        state = await self._open()
        logger.info("%s ready on %s:%s", self.settings.service_name, self.settings.host, self.settings.port)
        try:
            yield state
        finally:
            await self._close(state)

    async def _open(self) -> State:
        settings = self.settings
        state: State = {
            "settings": settings,
            "db": Database(settings.database_url, quick_pool_size=settings.database_quick_pool_size)
            if self.use_database
            else None,
            "redis": create_redis(settings.redis_url) if self.use_redis else None,
            "clients": {
                name: ServiceClient(
                    name,
                    getattr(settings, f"{name}_url"),
                    timeout=settings.upstream_timeout_seconds,
                    connect_timeout=settings.upstream_connect_timeout_seconds,
                )
                for name in self.upstreams
            },
        }
        if state["db"] is not None:
            await state["db"].create_all()
        for hook in self.on_startup:
            await hook(state)
        return state

    async def _close(self, state: State) -> None:
        for hook in reversed(self.on_shutdown):
            try:
                await hook(state)
            except Exception:
                logger.exception("shutdown hook failed")
        for client in state["clients"].values():
            await client.aclose()
        if state["redis"] is not None:
            await state["redis"].aclose()
        if state["db"] is not None:
            await state["db"].dispose()


def install_middleware(
    app: FastAPI,
    settings: Settings,
    body_limits: Mapping[tuple[str, str], BodyLimit] | None,
    error_shapes: ErrorShapes,
) -> None:
    if settings.cors_origin_list:
        app.add_middleware(CORSMiddleware, **cors_options(settings))
    app.add_middleware(
        RequestContextMiddleware,
        service=settings.service_name,
        max_body_bytes=settings.max_body_bytes,
        body_limits=body_limits,
        error_shapes=error_shapes,
    )


def install_ops_routes(app: FastAPI, settings: Settings, ready_checks: dict[str, ReadyCheck]) -> None:
    """``/health``, ``/ready`` (database, Redis, the upstream services, the service's own checks)
    and ``/metrics``."""

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name, "version": settings.version}

    @app.get("/ready", tags=["ops"], response_model=ReadyBody, responses=READY_RESPONSES)
    async def ready(request: Request) -> JSONResponse:
        state: State = request.scope["state"]
        probes: dict[str, Callable[[], Awaitable[Any]]] = {}
        if state["db"] is not None:
            probes["database"] = state["db"].ping
        if state["redis"] is not None:
            probes["redis"] = state["redis"].ping
        for name, client in state["clients"].items():
            probes[name] = client.health
        for name, check in ready_checks.items():
            probes[name] = lambda check=check: check(state)
        body, status = await check_all(probes)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(metrics_payload(), media_type=METRICS_CONTENT_TYPE)


def install_docs_routes(app: FastAPI, document: Callable[[], dict[str, Any]]) -> None:
    """``/openapi.json`` answering ``document()`` (built at the first request, off the event loop,
    then kept), and ``/docs`` and ``/redoc`` showing it, as FastAPI's own docs routes do."""
    built: list[dict[str, Any]] = []
    lock = threading.Lock()

    def published() -> dict[str, Any]:
        with lock:
            if not built:
                built.append(document())
            return built[0]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:  # sync: the first build runs in the thread pool
        return JSONResponse(published())

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


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


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def tune_malloc(mmap_threshold: int) -> bool:
    """Blocks of at least ``mmap_threshold`` bytes get pages of their own, given back to the
    system when freed; True when it was applied (glibc only).

    glibc's own threshold rises to the largest block freed so far (up to 32 MiB), and from then
    on such blocks are carved from the heap and stay resident after they are freed: each argon2
    hash (19 MiB) left ~19 MiB per hashing thread, and user_service sat at 135 MB after one
    registration and login instead of 116 MB (bench/README.md, issue 15). Setting it fixes the
    threshold. 0 keeps glibc's behaviour."""
    if mmap_threshold <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to tune
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))


def serve(app: FastAPI, settings: Settings) -> None:
    """Run a service with uvicorn on its HOST/PORT; SIGTERM lets in-flight requests finish."""
    tune_garbage_collector(settings.gc_gen0_threshold)
    tune_malloc(settings.malloc_mmap_threshold_bytes)
    uvicorn.run(app, **uvicorn_options(settings))
