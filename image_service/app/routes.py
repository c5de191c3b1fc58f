"""HTTP routes of image_service (docs/api.md §8). Thin: validate, call ``images`` / ``generations``,
shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import StreamingResponse

from common.deps import CurrentUser, SessionDep
from common.pagination import DEFAULT_LIMIT, Limit, Offset, Page, page_of
from image_service.app import crud, generations, images
from image_service.app.config import ImageSettings
from image_service.app.deps import ImagesDep, ImageSettingsDep, OptionalUser, StorageDep, WorkersDep
from image_service.app.schemas import (
    GenerationCreate,
    GenerationRead,
    GenerationResultRead,
    ImageRead,
    RatingUpdate,
    error_responses,
)
from image_service.app.storage import ImageStorage
from image_service.app.uploads import receive_upload

# Every route may meet a bad token (401) and a dependency down (503).
router = APIRouter(prefix="/api/v1", tags=["images"], responses=error_responses(401, 503))

# The body is streamed by ``receive_upload``, not parsed by FastAPI; this documents it for /docs.
UPLOAD_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "record_id": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/images",
    status_code=status.HTTP_201_CREATED,
    response_model=ImageRead,
    openapi_extra=UPLOAD_OPENAPI,
    responses={
        201: {"description": "The new image, or the existing one when the same bytes were uploaded before"},
        **error_responses(400, 404, 413, 415),
    },
    summary="Upload an image (201, also when the same bytes were already uploaded: the existing image)",
)
async def upload_image(
    request: Request,
    caller: CurrentUser,
    session: SessionDep,
    ctx: ImagesDep,
) -> ImageRead:
    scratch = ctx.storage.temp_file()
    try:
        upload = await receive_upload(request, scratch, ctx.settings.image_max_bytes)
        # docs/api.md §8: always 201; a duplicate (same bytes, same owner) answers the existing image.
        image, _created = await images.store_upload(session, ctx, caller.id, upload)
    finally:
        scratch.unlink(missing_ok=True)
    return ImageRead.of(image)


@router.get("/images", response_model=Page[ImageRead], summary="The caller's images, newest first")
async def list_images(
    caller: CurrentUser,
    session: SessionDep,
    offset: Offset = 0,  # capped: ?offset=2**63 was a 500 (SQLite integer overflow)
    limit: Limit = DEFAULT_LIMIT,
) -> Page[ImageRead]:
    rows, total = await crud.list_images(session, caller.id, offset, limit)
    return page_of([ImageRead.of(i) for i in rows], total, offset, limit)


@router.get(
    "/images/{image_id}", response_model=ImageRead, responses=error_responses(404), summary="One of the caller's images"
)
async def read_image(image_id: str, caller: CurrentUser, session: SessionDep) -> ImageRead:
    return ImageRead.of(await images.owned_image(session, caller.id, image_id))


# The token is optional there (anyone may read an image attached to a published record): FastAPI
# appends this empty requirement, "no credentials", to the bearer one it documents.
OPTIONAL_AUTH_OPENAPI: dict[str, Any] = {"security": [{}]}


def _cache_headers(etag: str, public: bool, settings: ImageSettings) -> dict[str, str]:
    cache = (
        f"public, max-age={settings.cache_max_age_public_seconds}"
        if public
        else f"private, max-age={settings.cache_max_age_private_seconds}"
    )
    return {"ETag": etag, "Cache-Control": cache, "X-Content-Type-Options": "nosniff"}


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in candidates or etag in candidates


async def _serve(
    request: Request, storage: ImageStorage, key: str, mime: str, etag: str, public: bool, settings: ImageSettings
) -> Response:
    headers = _cache_headers(etag, public, settings)
    if _etag_matches(request, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    chunks = await storage.open_chunks(key)
    return StreamingResponse(chunks, media_type=mime, headers=headers)


@router.get(
    "/images/{image_id}/content",
    summary="The image's bytes (the owner, or anyone while it is attached to a published record)",
    response_class=Response,
    responses=error_responses(404),
    openapi_extra=OPTIONAL_AUTH_OPENAPI,
)
async def image_content(
    image_id: str,
    request: Request,
    caller: OptionalUser,
    session: SessionDep,
    ctx: ImagesDep,
) -> Response:
    readable = await images.readable_image(session, image_id, caller.id if caller else None)
    image = readable.image
    return await _serve(
        request, ctx.storage, image.storage_key, image.mime, images.content_etag(image), readable.public, ctx.settings
    )


@router.get(
    "/images/{image_id}/thumbnail",
    summary="A small WebP of the image (made once, then cached)",
    response_class=Response,
    responses=error_responses(404),
    openapi_extra=OPTIONAL_AUTH_OPENAPI,
)
async def image_thumbnail(
    image_id: str,
    request: Request,
    caller: OptionalUser,
    session: SessionDep,
    ctx: ImagesDep,
) -> Response:
    readable = await images.readable_image(session, image_id, caller.id if caller else None)
    settings = ctx.settings
    etag = images.thumbnail_etag(readable.image, settings.thumbnail_max_side)
    if _etag_matches(request, etag):
        return Response(
            status_code=status.HTTP_304_NOT_MODIFIED, headers=_cache_headers(etag, readable.public, settings)
        )
    key, mime = await images.ensure_thumbnail(ctx, readable.image)
    return await _serve(request, ctx.storage, key, mime, etag, readable.public, settings)


@router.delete(
    "/images/{image_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(404),
)
async def delete_image(image_id: str, caller: CurrentUser, session: SessionDep, storage: StorageDep) -> Response:
    await images.delete_image(session, storage, caller.id, image_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------- generation tasks


@router.post(
    "/generations",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GenerationRead,
    responses=error_responses(400, 429),
    tags=["generations"],
)
async def create_generation(
    data: GenerationCreate, caller: CurrentUser, session: SessionDep, settings: ImageSettingsDep, workers: WorkersDep
) -> GenerationRead:
    task = await generations.create_task(session, settings, caller.id, data)
    if workers is not None:
        workers.notify()
    return task


@router.get("/generations", response_model=Page[GenerationRead], tags=["generations"])
async def list_generations(
    caller: CurrentUser,
    session: SessionDep,
    offset: Offset = 0,  # capped: ?offset=2**63 was a 500 (SQLite integer overflow)
    limit: Limit = DEFAULT_LIMIT,
) -> Page[GenerationRead]:
    return await generations.task_page(session, caller.id, offset, limit)


@router.get(
    "/generations/{task_id}", response_model=GenerationRead, responses=error_responses(404), tags=["generations"]
)
async def read_generation(task_id: str, caller: CurrentUser, session: SessionDep) -> GenerationRead:
    return await generations.read_task(session, caller.id, task_id)


@router.post(
    "/generations/{task_id}/cancel",
    response_model=GenerationRead,
    responses=error_responses(404, 409),
    tags=["generations"],
)
async def cancel_generation(task_id: str, caller: CurrentUser, session: SessionDep) -> GenerationRead:
    return await generations.cancel(session, caller.id, task_id)


@router.put(
    "/generations/{task_id}/results/{index}/rating",
    response_model=GenerationResultRead,
    responses=error_responses(400, 404, 409),
    tags=["generations"],
)
async def rate_generation_result(
    task_id: str,
    index: Annotated[int, Path(ge=0, le=3)],
    data: RatingUpdate,
    caller: CurrentUser,
    session: SessionDep,
) -> GenerationResultRead:
    return await generations.rate(session, caller.id, task_id, index, data.rating)
