"""The FastAPI services' exception handlers: every error becomes ``{"detail", "code",
"request_id"}`` (docs/api.md §4), 404/405/422/500 and a Redis or database outage included."""

from __future__ import annotations

import logging

import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from common.app_state import settings_of
from common.cache import redis_unavailable_detail
from common.errors import AppError, error_body
from common.logging_setup import request_id_var
from common.observability import REQUEST_ID_HEADER

logger = logging.getLogger(__name__)


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
        settings = settings_of(request)
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
