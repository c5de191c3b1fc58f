"""Wires web_service's pieces onto the Flask app made by ``common.flask_factory``."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app

from common.config import SERVICE_PORTS
from common.forwarding_rules import ForwardingConfig
from common.forwarding_wsgi import WsgiForwarder
from web_service.app.api import WEB_FORWARD_ROUTES, api
from web_service.app.auth import install_session_hooks
from web_service.app.config import WebSettings
from web_service.app.i18n import catalogue, current_language, translate
from web_service.app.pages import pages
from web_service.app.public import public_pages
from web_service.app.sessions import SessionStore
from web_service.app.static_files import install_static
from web_service.app.user_api import UserApi

# Pages load only their own scripts and styles; images may come from blobs (upload previews).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def make_forwarder(settings: WebSettings) -> WsgiForwarder:
    upstreams = {name: getattr(settings, f"{name}_url") for name in SERVICE_PORTS if name != "web_service"}
    config = ForwardingConfig(
        upstreams=upstreams,
        timeout_seconds=settings.forward_timeout_seconds,
        long_timeout_seconds=settings.forward_llm_timeout_seconds,
        connect_timeout_seconds=settings.forward_connect_timeout_seconds,
        max_connections=settings.web_connections,
        max_body_bytes=settings.api_max_body_bytes,
    )
    # The session cookie and CSRF header are the browser's business with web_service only. The
    # browser's own X-Forwarded-For is not passed on: web_service is the edge, the client address is
    # request.remote_addr (resolved through TRUSTED_PROXY_COUNT proxies), and the shared rules add it.
    return WsgiForwarder(config, WEB_FORWARD_ROUTES, drop_request_headers=("cookie", "x-csrf-token", "x-forwarded-for"))


def _page_context() -> dict[str, Any]:
    lang = current_language(current_app.extensions["settings"].default_language)
    return {
        "lang": lang,
        "t": lambda key, **values: translate(lang, key, **values),
        "catalogue": catalogue(lang),
    }


def _security_headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def close_web_resources(app: Flask) -> None:
    """Close the forwarder's connection pool and the Redis client (called at worker exit)."""
    forwarder: WsgiForwarder | None = app.extensions.get("web_forwarder")
    if forwarder is not None:
        forwarder.close()
    client = app.extensions.get("redis")
    if client is not None:
        client.close()


def install_web_app(app: Flask, settings: WebSettings) -> None:
    forwarder = make_forwarder(settings)
    app.extensions["web_forwarder"] = forwarder
    app.extensions["web_user_api"] = UserApi(forwarder)
    app.extensions["web_sessions"] = SessionStore(app.extensions["redis"], settings)
    install_session_hooks(app)
    install_static(app)
    app.context_processor(_page_context)
    app.after_request(_security_headers)
    for blueprint in (pages, public_pages, api):
        app.register_blueprint(blueprint)
