"""mobile_service — records, sync and publishing; the mobile app's single base URL, on :8002.

Owns the ``records`` tables. Forwards auth/users to user_service, chat/text/models to
llm_service and images/generations to image_service (SPEC §6).
Run: ``python mobile_service/main.py`` (or through the launcher, ``python main.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI

from common.app_factory import create_app, serve
from common.config import Settings, load_settings
from mobile_service.app.routes import router

SERVICE = "mobile_service"


def build_app(settings: Settings | None = None, **factory_kwargs: object) -> FastAPI:
    settings = settings or load_settings(Settings, SERVICE)
    return create_app(
        settings,
        title="mobile_service",
        description="Records, sync and publishing; the mobile app's single base URL.",
        routers=[router],
        **factory_kwargs,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    settings = load_settings(Settings, SERVICE)
    serve(build_app(settings), settings)
