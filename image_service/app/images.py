"""Image logic: accept an upload or a generated file, serve, list, delete.

Routes call these; data access is in ``crud``, bytes go through the ``ImageStorage`` interface,
pixels through ``processing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import NotFound
from common.models.image import IMAGE_ORIGIN_GENERATED, IMAGE_ORIGIN_UPLOAD, Image
from image_service.app import crud
from image_service.app.config import ImageSettings
from image_service.app.processing import (
    THUMBNAIL_EXTENSION,
    THUMBNAIL_MIME,
    CleanImage,
    DecodePool,
    clean_image,
    make_thumbnail,
)
from image_service.app.storage import STORE_ERRORS, ImageStorage, new_key
from image_service.app.uploads import ReceivedUpload


@dataclass(frozen=True, slots=True)
class ImageContext:
    """What image logic needs besides a database session; built once by the app's lifespan."""

    storage: ImageStorage
    settings: ImageSettings
    decoder: DecodePool


@dataclass(frozen=True, slots=True)
class Readable:
    """An image someone may read, and whether it is readable by anyone (published)."""

    image: Image
    public: bool


def content_etag(image: Image) -> str:
    return f'"{image.sha256}"'


def thumbnail_etag(image: Image, max_side: int) -> str:
    return f'"{image.sha256[:40]}-t{max_side}"'


def thumbnail_key(image: Image) -> str:
    return new_key("thumbnails", THUMBNAIL_EXTENSION, image.id)


async def _store_clean(ctx: ImageContext, source: Path, image_id: str, owner_id: str) -> tuple[CleanImage, str]:
    """Re-encode ``source`` into the store under a server-made key."""
    target = ctx.storage.temp_file()
    try:
        clean = await ctx.decoder.run(
            clean_image, source, target, ctx.settings.image_max_pixels, ctx.settings.image_max_frames, owner=owner_id
        )
        key = new_key("originals", clean.extension, image_id)
        await ctx.storage.put_file(key, target)
    finally:
        target.unlink(missing_ok=True)
    return clean, key


async def store_upload(
    session: AsyncSession, ctx: ImageContext, owner_id: str, upload: ReceivedUpload
) -> tuple[Image, bool]:
    """Accept an upload; returns (image, created). The same bytes uploaded again by the same owner
    return the existing image (created = False). A ``record_id`` must name one of the owner's
    records in both cases (checked first: a duplicate must not skip it)."""
    record_id = upload.fields.get("record_id") or None
    if record_id and not await crud.record_is_owned(session, owner_id, record_id):
        raise NotFound("Record not found")
    existing = await crud.find_by_source_hash(session, owner_id, upload.sha256)
    if existing is not None:
        return existing, False
    await session.commit()  # end the read transaction: no connection held while Pillow works
    image_id = str(uuid.uuid4())
    clean, key = await _store_clean(ctx, upload.path, image_id, owner_id)
    image = _image_row(image_id, owner_id, clean, key, origin=IMAGE_ORIGIN_UPLOAD, source_sha256=upload.sha256)
    image.record_id = record_id
    session.add(image)
    try:
        await session.commit()
    except IntegrityError:
        # The same bytes raced in through a concurrent request: keep the first, drop ours.
        await session.rollback()
        await ctx.storage.delete(key)
        existing = await crud.find_by_source_hash(session, owner_id, upload.sha256)
        if existing is None:
            raise
        return existing, False
    return image, True


def _image_row(
    image_id: str, owner_id: str, clean: CleanImage, key: str, *, origin: str, source_sha256: str | None
) -> Image:
    return Image(
        id=image_id,
        owner_id=owner_id,
        origin=origin,
        mime=clean.mime,
        width=clean.width,
        height=clean.height,
        size=clean.size,
        sha256=clean.sha256,
        source_sha256=source_sha256,
        storage_key=key,
    )


async def store_generated(ctx: ImageContext, owner_id: str, source: Path, task_id: str) -> tuple[Image, str]:
    """Clean and store provider bytes as an ordinary image of the owner (the caller adds the row to
    the same transaction that marks the result done, so a crash never leaves half of it)."""
    image_id = str(uuid.uuid4())
    clean, key = await _store_clean(ctx, source, image_id, owner_id)
    image = _image_row(image_id, owner_id, clean, key, origin=IMAGE_ORIGIN_GENERATED, source_sha256=None)
    image.generation_task_id = task_id
    return image, key


async def owned_image(session: AsyncSession, owner_id: str, image_id: str) -> Image:
    image = await crud.get_owned_image(session, owner_id, image_id)
    if image is None:
        raise NotFound("Image not found")
    return image


async def readable_image(session: AsyncSession, image_id: str, caller_id: str | None) -> Readable:
    """The owner may read; anyone may while it is attached to a published record. Else 404."""
    image = await crud.get_image(session, image_id)
    if image is None:
        raise NotFound("Image not found")
    public = await crud.is_published_attachment(session, image)
    await session.commit()  # end the read transaction before bytes are streamed
    if public or image.owner_id == caller_id:
        return Readable(image, public)
    raise NotFound("Image not found")


async def ensure_thumbnail(ctx: ImageContext, image: Image) -> tuple[str, str]:
    """The thumbnail's (key, mime), made on first request and cached in the store after that."""
    key = thumbnail_key(image)
    if await ctx.storage.exists(key):
        return key, THUMBNAIL_MIME
    original = ctx.storage.temp_file()
    target = ctx.storage.temp_file()
    try:
        await _copy_to_local(ctx.storage, image.storage_key, original)
        await ctx.decoder.run(make_thumbnail, original, target, ctx.settings.thumbnail_max_side, owner=image.owner_id)
        await ctx.storage.put_file(key, target)  # atomic: concurrent first requests both end well
    finally:
        original.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
    return key, THUMBNAIL_MIME


async def _copy_to_local(storage: ImageStorage, key: str, target: Path) -> None:
    chunks = await storage.open_chunks(key)
    handle = await asyncio.to_thread(target.open, "wb")
    try:
        async for chunk in chunks:
            await asyncio.to_thread(handle.write, chunk)
    finally:
        await asyncio.to_thread(handle.close)


async def delete_image(session: AsyncSession, storage: ImageStorage, owner_id: str, image_id: str) -> None:
    """The bytes go first: a store that cannot delete them (503/502) leaves the image as it was,
    to be deleted again, rather than a row gone and its bytes kept where no one sees them."""
    image = await owned_image(session, owner_id, image_id)
    await session.commit()  # no transaction held while the store works
    for key in (image.storage_key, thumbnail_key(image)):
        await storage.delete(key)
    await session.delete(image)
    await session.commit()


async def discard_stored(storage: ImageStorage, key: str) -> None:
    with contextlib.suppress(*STORE_ERRORS):
        await storage.delete(key)
