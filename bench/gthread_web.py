"""web_service served the way it was before the gevent worker: gunicorn gthread, one worker,
``BENCH_GTHREADS`` threads (64 then). Only for comparison in the same bench run
(``harness.start_web_gthread``); production serves through ``web_service/app/server.py``.

Run: ``python -m bench.gthread_web`` with ``WEB_SERVICE_PORT`` and the usual service env.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from common.config import load_settings
from web_service.app.config import WebSettings
from web_service.main import SERVICE, build_app


class GthreadWeb(BaseApplication):
    def __init__(self, settings: WebSettings, threads: int) -> None:
        self.settings = settings
        self.threads = threads
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": f"{self.settings.host}:{self.settings.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": self.threads,
            "timeout": 120,
            "accesslog": None,
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return build_app(self.settings)


if __name__ == "__main__":
    GthreadWeb(load_settings(WebSettings, SERVICE), int(os.environ.get("BENCH_GTHREADS", "64"))).run()
