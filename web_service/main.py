"""web_service — the browser's entry (Flask), on :8000: web app, public pages, same-origin API.

Tokens stay on the server (browser session in Redis); ``/api/v1/...`` is forwarded to the
services with the session's bearer token (docs/api.md §10). Served by gunicorn's gevent worker
(``app/server.py``).
Run: ``python web_service/main.py`` (or through the launcher, ``python main.py``).
"""

from __future__ import annotations

if __name__ == "__main__":
    # Served by gunicorn's gevent worker (web_service/app/server.py): the standard library must be
    # made cooperative before anything imports sockets, ssl or threading.
    from gevent import monkey

    monkey.patch_all()

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from common.config import load_settings
from common.flask_factory import create_flask_app
from web_service.app.config import WebSettings
from web_service.app.setup import install_web_app

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


if __name__ == "__main__":
    from web_service.app.server import WebServer

    WebServer(build_app, load_settings(WebSettings, SERVICE)).run()
