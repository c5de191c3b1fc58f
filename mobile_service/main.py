"""mobile_service — records, sync and publishing; the mobile app's single base URL, on :8002.

Owns the ``records`` table (``common.models.record``). Forwards auth/users to user_service,
chat/text/models/usage to llm_service and images/generations to image_service (docs/api.md §6) through the
one forwarding proxy of ``common.forwarding``. See ``mobile_service/README.md``.
Run: ``python mobile_service/main.py`` (or through the launcher, ``python main.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI

from common.app_factory import create_app, serve
from common.app_state import State
from common.config import load_settings
from common.forwarding import AsgiForwarder, install_forwarding
from common.forwarding_rules import FORWARDED_SERVICES, ForwardingConfig
from mobile_service.app.api_docs import base_url_document
from mobile_service.app.config import MobileSettings
from mobile_service.app.history import HistoryPolicy, RecordPurger
from mobile_service.app.routes import routers

SERVICE = "mobile_service"


def forwarding_config(settings: MobileSettings) -> ForwardingConfig:
    return ForwardingConfig(
        upstreams={name: getattr(settings, f"{name}_url") for name in FORWARDED_SERVICES},
        timeout_seconds=settings.forward_timeout_seconds,
        long_timeout_seconds=settings.forward_llm_timeout_seconds,
        connect_timeout_seconds=settings.forward_connect_timeout_seconds,
        max_connections=settings.forward_max_connections,
        max_body_bytes=settings.forward_max_body_bytes,
    )


def build_app(settings: MobileSettings | None = None, **factory_kwargs: object) -> FastAPI:
    settings = settings or load_settings(MobileSettings, SERVICE)
    forwarder = AsgiForwarder(forwarding_config(settings))
    purger = RecordPurger(HistoryPolicy.from_settings(settings), settings.record_purge_interval_seconds)

    async def open_forwarder(_state: State) -> None:
        await forwarder.open()

    async def close_forwarder(_state: State) -> None:
        await forwarder.aclose()

    async def start_purger(state: State) -> None:
        if state["db"] is not None:
            purger.start(state["db"])  # tombstones and revisions past their windows (docs/api.md §16)

    async def stop_purger(_state: State) -> None:
        await purger.stop()

    app = create_app(
        settings,
        title="mobile_service",
        description="Records, sync and publishing; the mobile app's single base URL.",
        routers=routers,
        upstreams=["llm_service"],
        on_startup=[open_forwarder, start_purger],
        on_shutdown=[close_forwarder, stop_purger],
        # /openapi.json and /docs: the whole base URL, forwarded routes included (built at the first
        # request); app.openapi() stays mobile_service's own operations (what the fuzzers test).
        published_openapi=base_url_document(lambda: app.openapi()),
        **factory_kwargs,  # type: ignore[arg-type]
    )
    install_forwarding(app, settings, forwarder)
    return app


if __name__ == "__main__":
    settings = load_settings(MobileSettings, SERVICE)
    serve(build_app(settings), settings)
