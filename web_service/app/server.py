"""How web_service is served: gunicorn with a gevent worker (web_service/README.md, "Concurrency").

Every connection is a greenlet, not a thread, so a chat stream or a client that sends its request
slowly costs a few kilobytes, never a slot that other users wait for. The Flask app stays a plain
WSGI app; the standard library is patched (``web_service/main.py``) before anything is imported, so
Redis, the forwarder's pooled ``httpx.Client`` and ``time.sleep`` yield instead of blocking.

Two read limits close what a slow client holds:
- the request line and headers must arrive within ``WEB_HEADER_TIMEOUT_SECONDS`` (gunicorn applies
  its keep-alive timeout as a deadline around reading each request's head, the first one included);
- no read of a body, and no write of an answer, may stall longer than ``WEB_READ_TIMEOUT_SECONDS``
  (a socket timeout on the client connection); the connection is then closed.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

from web_service.app.config import WebSettings
from web_service.app.setup import close_web_resources


def gevent_worker_class(read_timeout_seconds: float) -> type[GeventWorker]:
    """gunicorn's gevent worker with a socket timeout on each client connection."""

    class WebGeventWorker(GeventWorker):
        def handle(self, listener: Any, client: Any, addr: Any) -> None:
            # GeventWorker.handle would make the socket fully blocking (no timeout); keep ours.
            client.settimeout(read_timeout_seconds)
            AsyncWorker.handle(self, listener, client, addr)

    return WebGeventWorker


class WebServer(BaseApplication):
    """gunicorn, configured from ``WebSettings``, serving the app that ``build`` makes.

    The app is built in each worker after gevent has patched it (``load`` runs there), so its
    locks and sockets are the cooperative ones.
    """

    def __init__(self, build: Any, settings: WebSettings) -> None:
        self.build = build
        self.settings = settings
        self.application: Flask | None = None
        super().__init__()

    def load_config(self) -> None:
        settings = self.settings
        options = {
            "bind": f"{settings.host}:{settings.port}",
            "workers": settings.web_workers,
            "worker_class": gevent_worker_class(settings.web_read_timeout_seconds),
            "worker_connections": settings.web_connections,
            "keepalive": settings.web_header_timeout_seconds,
            "graceful_timeout": settings.shutdown_grace_seconds,
            "timeout": 120,
            "accesslog": None,
            "control_socket_disable": True,
            # Each worker closes its upstream connection pool and its Redis connections on the way out.
            "worker_exit": lambda _server, _worker: self.application and close_web_resources(self.application),
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        if self.application is None:
            self.application = self.build(self.settings)
        return self.application
