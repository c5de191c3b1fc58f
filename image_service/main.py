"""image_service — image uploads, thumbnails and image-generation tasks, on :8004.

Owns the ``images``, ``generation_tasks`` and ``generation_results`` tables and the image storage
directory (docs/api.md §8); reads the shared ``records`` table to serve images of published records.
Generation workers run inside this process (started and stopped by the app's lifespan).
Run: ``python image_service/main.py`` (or through the launcher, ``python main.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI

from common.app_factory import BodyLimit, create_app, serve
from common.config import load_settings
from image_service.app.config import ImageSettings
from image_service.app.deps import ImageState
from image_service.app.images import ImageContext
from image_service.app.processing import DecodePool
from image_service.app.provider import ImageProvider, provider_configured
from image_service.app.routes import router
from image_service.app.storage import build_storage
from image_service.app.workers import GenerationWorkers

SERVICE = "image_service"


async def _open_images(state: ImageState) -> None:
    settings: ImageSettings = state["settings"]  # type: ignore[assignment]
    storage = build_storage(settings)
    await storage.open()
    state["images"] = ImageContext(
        storage=storage,
        settings=settings,
        decoder=DecodePool(settings.image_decode_workers, settings.image_decode_per_user),
    )
    state["provider"] = ImageProvider(settings)
    state["generation_workers"] = None
    if settings.generation_workers_enabled and provider_configured(settings):
        assert state["db"] is not None  # image_service always opens its database
        workers = GenerationWorkers(state["db"], state["images"], state["provider"])
        await workers.start()
        state["generation_workers"] = workers


async def _close_images(state: ImageState) -> None:
    # A startup hook that failed half-way leaves some keys unset: close what is there.
    workers = state.get("generation_workers")
    if workers is not None:
        await workers.stop()
    provider = state.get("provider")
    if provider is not None:
        await provider.aclose()
    images = state.get("images")
    if images is not None:
        images.decoder.close()
        await images.storage.close()


async def _storage_ready(state: ImageState) -> None:
    await state["images"].storage.check()


def build_app(settings: ImageSettings | None = None, **factory_kwargs: object) -> FastAPI:
    settings = settings or load_settings(ImageSettings, SERVICE)
    return create_app(
        settings,
        title="image_service",
        description="Image uploads, thumbnails and image-generation tasks.",
        routers=[router],
        on_startup=[_open_images],
        on_shutdown=[_close_images],
        ready_checks={"storage": _storage_ready},
        body_limits={("POST", "/api/v1/images"): BodyLimit(settings.upload_body_bytes, settings.image_limit_detail)},
        **factory_kwargs,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    settings = load_settings(ImageSettings, SERVICE)
    serve(build_app(settings), settings)
