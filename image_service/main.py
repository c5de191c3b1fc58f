"""image_service — image uploads, thumbnails and image-generation tasks, on :8004.

Owns the ``images`` and generation tables and the image storage directory (SPEC §8).
Run: ``python image_service/main.py`` (or through the launcher, ``python main.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI

from common.app_factory import create_app, serve
from common.config import Settings, load_settings
from image_service.app.routes import router

SERVICE = "image_service"


def build_app(settings: Settings | None = None, **factory_kwargs: object) -> FastAPI:
    settings = settings or load_settings(Settings, SERVICE)
    return create_app(
        settings,
        title="image_service",
        description="Image uploads, thumbnails and image-generation tasks.",
        routers=[router],
        **factory_kwargs,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    settings = load_settings(Settings, SERVICE)
    serve(build_app(settings), settings)
