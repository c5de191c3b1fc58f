"""The FastAPI services' exception handlers: every error becomes ``{"detail", "code",
"request_id"}`` (docs/api.md §4), 404/405/422/500 and a Redis or database outage included.
A service may answer another API's error body under a path prefix (``ErrorShapes``: llm_service's
OpenAI-compatible ``/v1``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Send

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


ErrorShaper = Callable[[int, dict[str, Any]], dict[str, Any]]
"""Turns an error's docs/api.md §4 body (and its status) into another API's error body."""


class ErrorShapes:
    """The error body of each path: the §4 shape, or a shaper's under its path prefix."""

    def __init__(self, by_prefix: Mapping[str, ErrorShaper] | None = None) -> None:
        self.by_prefix = tuple((by_prefix or {}).items())

    def body(self, path: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
        for prefix, shaper in self.by_prefix:
            if path.startswith(prefix):
                return shaper(status, body)
        return body

    def response(
        self, path: str, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> JSONResponse:
        return JSONResponse(self.body(path, status, body), status_code=status, headers=dict(headers or {}) or None)

    async def send(self, send: Send, path: str, request_id: str, exc: AppError) -> None:
        """Answer ``exc`` straight from an ASGI middleware (before any route ran)."""
        response = self.response(path, exc.status_code, exc.body(request_id), exc.headers)
        response.headers[REQUEST_ID_HEADER] = request_id
        await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def _length_message(kind: str, limit: int) -> str:
    bound = "most" if kind == "too_long" else "least"
    return f"String should have at {bound} {limit} character{'' if limit == 1 else 's'}"


def string_length_error(err: dict[str, Any]) -> dict[str, Any]:
    """A string's length limit in characters. pydantic reports the limit of a ``str`` that carries
    a validator of its own (``Annotated[str, AfterValidator(...), Field(max_length=...)]``) as the
    generic ``too_long``/``too_short`` ("Value should have at most 200 items after validation");
    for a string input it becomes ``string_too_long``/``string_too_short``, as for a plain ``str``."""
    kind = err.get("type")
    if kind not in ("too_long", "too_short") or not isinstance(err.get("input"), str):
        return err
    key = "max_length" if kind == "too_long" else "min_length"
    limit = (err.get("ctx") or {}).get(key)
    if not isinstance(limit, int):
        return err
    return {**err, "type": f"string_{kind}", "msg": _length_message(kind, limit), "ctx": {key: limit}}


def public_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's detail list, lengths of strings in characters, without echoing the input back
    (it may hold a password)."""
    errors = [string_length_error(err) for err in exc.errors()]
    return jsonable_encoder([{k: v for k, v in err.items() if k not in ("input", "url")} for err in errors])


def install_error_handlers(app: FastAPI, shapes: ErrorShapes | None = None) -> None:
    """Map every error to ``{"detail", "code", "request_id"}`` (or the shape of its path)."""
    shapes = shapes or ErrorShapes()

    def answer(
        request: Request, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> JSONResponse:
        return shapes.response(request.url.path, status, body, headers)

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return answer(request, exc.status_code, exc.body(request_id_of(request)), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = error_body(exc.status_code, exc.detail, request_id_of(request))
        if exc.status_code == 401:
            body["code"] = "not_authenticated"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return answer(request, exc.status_code, body, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        body = error_body(422, public_validation_errors(exc), request_id_of(request), "validation_error")
        return answer(request, 422, body)

    @app.exception_handler(redis.exceptions.RedisError)
    async def _redis_down(request: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
        settings = settings_of(request)
        logger.warning("redis error: %s", type(exc).__name__)
        body = error_body(503, redis_unavailable_detail(settings.redis_url), request_id_of(request))
        return answer(request, 503, body)

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def _database_error(request: Request, exc: sqlalchemy.exc.DBAPIError) -> JSONResponse:
        # PostgreSQL refuses NUL characters in text (SQLite stores them): bad input, not a crash.
        if "0x00" in str(exc.orig):
            body = error_body(400, "Text must not contain NUL (\\u0000) characters", request_id_of(request))
            return answer(request, 400, body)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        body = error_body(500, "Internal server error", request_id_of(request))
        response = answer(request, 500, body)
        response.headers[REQUEST_ID_HEADER] = request_id_of(request)
        return response
