"""Typed dependencies of image_service, declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from common.app_state import State, extra_of, settings_of
from common.security import TokenUser, bearer_scheme, current_user
from image_service.app.config import ImageSettings
from image_service.app.images import ImageContext
from image_service.app.provider import ImageProvider
from image_service.app.storage import ImageStorage
from image_service.app.workers import GenerationWorkers


class ImageState(State):
    """image_service's lifespan State: the common keys plus its storage/decoder context, the
    generation provider and the workers (None when generation is off)."""

    images: ImageContext
    provider: ImageProvider
    generation_workers: GenerationWorkers | None


async def get_image_context(request: Request) -> ImageContext:
    return extra_of(request, "images")


async def get_storage(request: Request) -> ImageStorage:
    return extra_of(request, "images").storage


async def get_image_settings(request: Request) -> ImageSettings:
    return settings_of(request)  # type: ignore[return-value]


async def get_workers(request: Request) -> GenerationWorkers | None:
    return extra_of(request, "generation_workers")


async def optional_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> TokenUser | None:
    """The caller when a bearer token is sent (a bad token is still a 401), else None: published
    images are readable without a token."""
    if credentials is None:
        return None
    return await current_user(request, credentials)


ImagesDep = Annotated[ImageContext, Depends(get_image_context)]
StorageDep = Annotated[ImageStorage, Depends(get_storage)]
ImageSettingsDep = Annotated[ImageSettings, Depends(get_image_settings)]
WorkersDep = Annotated[GenerationWorkers | None, Depends(get_workers)]
OptionalUser = Annotated[TokenUser | None, Depends(optional_user)]
