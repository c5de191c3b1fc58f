"""The Flask twin of ``app_factory`` for web_service (docs/api.md §10, §11): the same error shape on
JSON endpoints, request ids, the access-log line, ``/health``, ``/ready`` and ``/metrics``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from common.cache import redis_timeouts
from common.config import Settings
from common.errors import AppError, BadRequest, error_body
from common.logging_setup import request_id_var, setup_logging, user_id_var
from common.observability import (
    METRICS_CONTENT_TYPE,
    REQUEST_ID_HEADER,
    accept_or_make_request_id,
    metrics_payload,
    record_request,
)
from common.readiness import check_all_sync
from common.redaction import redact_url

logger = logging.getLogger(__name__)


def wants_json() -> bool:
    """API paths and JSON clients get the error shape of docs/api.md §4; pages get an HTML error page."""
    if request.path.startswith("/api/") or request.path in ("/health", "/ready"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json"


def create_flask_app(
    settings: Settings,
    *,
    import_name: str,
    upstreams: tuple[str, ...] = (),
    ready_checks: dict[str, Callable[[], None]] | None = None,
    configure_logging: bool = True,
    **flask_kwargs: Any,
) -> Flask:
    if configure_logging:
        setup_logging(settings.service_name, settings.log_level, settings.log_format or "console", settings.log_dir)
    app = Flask(import_name, **flask_kwargs)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.env == "production",
    )
    app.extensions["settings"] = settings
    app.extensions["redis"] = redis.Redis.from_url(settings.redis_url, decode_responses=True, **redis_timeouts())
    install_request_context(app, settings)
    install_cors(app, settings.cors_origin_list)
    install_error_handlers(app, settings)
    install_ops_routes(app, settings, upstreams, dict(ready_checks or {}))
    return app


def install_request_context(app: Flask, settings: Settings) -> None:
    """Request id accepted or made (and returned), the access-log line and the metrics."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = accept_or_make_request_id(request.headers.get(REQUEST_ID_HEADER))
        request_id_var.set(g.request_id)
        user_id_var.set("-")

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", request_id_var.get())
        rule = request.url_rule.rule if request.url_rule else "unmatched"
        record_request(
            settings.service_name,
            request.method,
            rule,
            request.path,
            response.status_code,
            time.perf_counter() - g.get("started", time.perf_counter()),
            g.get("user_id") or user_id_var.get(),
        )
        return response


def error_response(
    status: int, detail: Any, code: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The error body of docs/api.md §4 for JSON clients, a small HTML page for pages."""
    body = error_body(status, detail, g.get("request_id", request_id_var.get()), code)
    if wants_json():
        resp = jsonify(body)
    else:
        resp = Response(
            f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{_escape(str(detail))}</p>"
            f"<p><small>request id {body['request_id']}</small></p>",
            mimetype="text/html",
        )
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def install_error_handlers(app: Flask, settings: Settings) -> None:
    @app.errorhandler(AppError)
    def _app_error(exc: AppError) -> Response:
        return error_response(exc.status_code, exc.detail, exc.code, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        # Keep what the exception adds besides its body, e.g. a 405's Allow (RFC 9110).
        extra = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return error_response(status, exc.description or exc.name, headers=extra)

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError) -> Response:
        detail = f"Redis is unreachable at {redact_url(settings.redis_url)}; start Redis or set REDIS_URL"
        return error_response(503, detail)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal server error")


def install_ops_routes(
    app: Flask, settings: Settings, upstreams: tuple[str, ...], ready_checks: dict[str, Callable[[], None]]
) -> None:
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name, "version": settings.version}

    @app.get("/ready")
    def ready() -> tuple[Response, int]:
        probes: dict[str, Callable[[], Any]] = {"redis": app.extensions["redis"].ping}
        for name in upstreams:
            url = getattr(settings, f"{name}_url")
            probes[name] = lambda url=url: httpx.get(f"{url}/health", timeout=2.0).raise_for_status()
        probes.update(ready_checks)
        body, status = check_all_sync(probes)
        return jsonify(body), status

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(metrics_payload(), mimetype=METRICS_CONTENT_TYPE)


CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_PREFLIGHT_MAX_AGE = "600"


def install_cors(app: Flask, origins: list[str]) -> None:
    """CORS from ``CORS_ORIGINS`` (docs/api.md §11), like the FastAPI services: only the listed origins,
    with credentials, ``X-Request-ID`` exposed, preflight ``OPTIONS`` answered here. Nothing is
    added when the list is empty (same-origin only)."""
    allowed = frozenset(origins)
    if not allowed:
        return

    @app.before_request
    def _cors_preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        if request.headers.get("Origin") not in allowed:
            raise BadRequest("Disallowed CORS origin")
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        requested = request.headers.get("Access-Control-Request-Headers")
        if requested:
            response.headers["Access-Control-Allow-Headers"] = requested
        response.headers["Access-Control-Max-Age"] = CORS_PREFLIGHT_MAX_AGE
        return response

    @app.after_request
    def _cors_headers(response: Response) -> Response:
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Expose-Headers"] = REQUEST_ID_HEADER
        return response


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
