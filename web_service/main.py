"""web_service — the browser's entry (Flask), on :8000: web app, public pages, same-origin API.

Tokens stay on the server (browser session in Redis); ``/api/v1/...`` is forwarded to the
services with the session's bearer token (SPEC §10). Served by gunicorn (gthread workers).
Run: ``python web_service/main.py`` (or through the launcher, ``python main.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask
from gunicorn.app.base import BaseApplication
from werkzeug.middleware.proxy_fix import ProxyFix

from common.config import load_settings
from common.flask_factory import create_flask_app
from web_service.app.config import WebSettings
from web_service.app.setup import close_web_resources, install_web_app

SERVICE = "web_service"
TEMPLATES_DIR = Path(__file__).resolve().parent / "res" / "templates"


def build_app(settings: WebSettings | None = None, **factory_kwargs: Any) -> Flask:
    settings = settings or load_settings(WebSettings, SERVICE)
    app = create_flask_app(
        settings,
        import_name=__name__,
        upstreams=("user_service", "mobile_service"),
        template_folder=str(TEMPLATES_DIR),
        static_folder=None,
        **factory_kwargs,
    )
    install_web_app(app, settings)
    if settings.trusted_proxy_count:
        # The client address (login limits, X-Forwarded-For upstream) and scheme as the trusted
        # proxies saw them; the Host header is used as received (the proxy must pass it through).
        hops = settings.trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app


class _Gunicorn(BaseApplication):
    """Run the Flask app in gunicorn from this file, with settings from ``WebSettings``."""

    def __init__(self, app: Flask, settings: WebSettings) -> None:
        self.application = app
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        options = {
            "bind": f"{self.settings.host}:{self.settings.port}",
            "workers": self.settings.web_workers,
            "worker_class": "gthread",
            "threads": self.settings.web_threads,
            "graceful_timeout": self.settings.shutdown_grace_seconds,
            "timeout": 120,
            "accesslog": None,
            "control_socket_disable": True,
            # Each worker closes its upstream connection pool and its Redis connections on the way out.
            "worker_exit": lambda _server, _worker: close_web_resources(self.application),
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


if __name__ == "__main__":
    settings = load_settings(WebSettings, SERVICE)
    _Gunicorn(build_app(settings), settings).run()
