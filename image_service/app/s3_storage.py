"""The S3-compatible backend of ``ImageStorage`` (AWS S3, MinIO, Ceph, R2; docs/api.md §8).

One aiobotocore client per process, opened by the lifespan. Writes read the local file one part
at a time: a file of one part is a single ``PutObject``, a larger one a multipart upload that is
aborted if anything fails or the task is cancelled (and multipart uploads left by a crash are
aborted on the next start). Reads stream ``GetObject``'s body. The bucket is created when missing,
at start or, if the store was down then, on first use: a store that comes back needs no restart.
Store failures become ``StoreUnavailable`` (503) or ``StoreFailed`` (502), never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from common.errors import NotFound
from image_service.app.config import ImageSettings
from image_service.app.storage import (
    KEY_PATTERN,
    READ_CHUNK_BYTES,
    STALE_TEMP_SECONDS,
    ScratchFiles,
    StoreFailed,
    StoreUnavailable,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
# The store answered but is overloaded or restarting: as good as down, for the caller.
UNAVAILABLE_STATUSES = {500, 503}
# Key prefixes new_key() makes: the sweep of abandoned multipart uploads looks only there.
KEY_PREFIXES = ("originals/", "thumbnails/")


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in MISSING_CODES or _status(exc) == 404


def _checked(key: str) -> str:
    """Only server-made keys reach the store (as on disk, where they must also stay in the root)."""
    if not KEY_PATTERN.match(key):
        raise ValueError(f"not a storage key: {key!r}")
    return key


def _translate(exc: Exception, doing: str) -> Exception:
    """A botocore/aiohttp failure as the service's error (the message names no secret)."""
    if isinstance(exc, ClientError) and _status(exc) not in UNAVAILABLE_STATUSES:
        code = exc.response.get("Error", {}).get("Code", "error")
        return StoreFailed(f"The image store refused to {doing} ({code})")
    return StoreUnavailable(f"The image store is unavailable ({type(exc).__name__})")


class S3Storage:
    """Objects in one bucket, under the same server-made keys as on local disk."""

    name = "s3"

    def __init__(self, settings: ImageSettings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.part_bytes = settings.s3_part_bytes
        self.scratch = ScratchFiles(settings.image_storage_dir)
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._bucket_ready = False
        self._bucket_lock = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle

    def _config(self) -> AioConfig:
        style = self.settings.s3_addressing_style or ("path" if self.settings.s3_endpoint_url else "auto")
        return AioConfig(
            connect_timeout=self.settings.s3_connect_timeout_seconds,
            read_timeout=self.settings.s3_read_timeout_seconds,
            retries={"max_attempts": self.settings.s3_max_attempts, "mode": "standard"},
            max_pool_connections=self.settings.s3_max_connections,
            s3={"addressing_style": style},
        )

    async def open(self) -> None:
        secret = self.settings.s3_secret_access_key
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.settings.s3_endpoint_url,
                region_name=self.settings.s3_region,
                aws_access_key_id=self.settings.s3_access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
                config=self._config(),
            )
        )
        try:
            await self._ensure_bucket()
            await self._abort_abandoned_uploads()
        except (StoreUnavailable, StoreFailed) as exc:  # the service starts anyway; /ready says why
            logger.warning("image store not usable at start: %s", exc)

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def _call(self, doing: str, operation: Callable[..., Awaitable[T]], **params: Any) -> T:
        try:
            return await operation(Bucket=self.bucket, **params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                self._bucket_ready = False  # deleted behind our back, or a store that lost its data
            raise
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
            raise _translate(exc, doing) from exc

    async def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        async with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                await self._call("find the bucket", self._client.head_bucket)
            except ClientError as exc:
                if not _is_missing(exc):
                    raise _translate(exc, "find the bucket") from exc
                await self._create_bucket()
            self._bucket_ready = True

    async def _create_bucket(self) -> None:
        params: dict[str, Any] = {}
        if self.settings.s3_region != "us-east-1":  # S3 refuses the default region as a constraint
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.s3_region}
        try:
            await self._call("create the bucket", self._client.create_bucket, **params)
            logger.info("created the image bucket %s", self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _translate(exc, "create the bucket") from exc

    async def _abort_abandoned_uploads(self) -> None:
        """Multipart uploads of a process that died mid-way (older than any live upload) hold
        storage until aborted; a lifecycle rule on the bucket would do it too."""
        cutoff = datetime.now(UTC) - timedelta(seconds=STALE_TEMP_SECONDS)
        for prefix in KEY_PREFIXES:
            try:
                listing = await self._call("list uploads", self._client.list_multipart_uploads, Prefix=prefix)
            except ClientError as exc:
                raise _translate(exc, "list uploads") from exc
            for upload in listing.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    await self._abort(upload["Key"], upload["UploadId"])

    # ------------------------------------------------------------ ImageStorage

    def temp_file(self) -> Path:
        return self.scratch.temp_file()

    async def put_file(self, key: str, source: Path) -> None:
        _checked(key)
        await self._ensure_bucket()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        handle = await asyncio.to_thread(source.open, "rb")
        try:
            first = await asyncio.to_thread(handle.read, self.part_bytes)
            if len(first) < self.part_bytes:  # all of it: one request
                await self._write(
                    "store the image", self._client.put_object, Key=key, Body=first, ContentType=content_type
                )
            else:
                await self._multipart(key, content_type, first, handle)
        finally:
            await asyncio.to_thread(handle.close)

    async def _write(self, doing: str, operation: Callable[..., Awaitable[T]], **params: Any) -> T:
        """A write call; a bucket that vanished (a store that lost its data) is made again once."""
        for attempt in (1, 2):
            try:
                return await self._call(doing, operation, **params)
            except ClientError as exc:
                if attempt == 1 and not self._bucket_ready:
                    await self._ensure_bucket()
                    continue
                raise _translate(exc, doing) from exc
        raise AssertionError("unreachable")

    async def _multipart(self, key: str, content_type: str, first: bytes, handle: BinaryIO) -> None:
        created = await self._write(
            "start an upload", self._client.create_multipart_upload, Key=key, ContentType=content_type
        )
        upload_id = created["UploadId"]
        try:
            parts = []
            chunk, number = first, 1
            while chunk:
                answer = await self._write(
                    "store a part", self._client.upload_part, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                chunk = await asyncio.to_thread(handle.read, self.part_bytes)
                number += 1
            del chunk
            await self._write(
                "finish an upload",
                self._client.complete_multipart_upload,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:  # an error, or the task cancelled: leave no parts behind
            await asyncio.shield(self._abort(key, upload_id))
            raise

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._call("abort an upload", self._client.abort_multipart_upload, Key=key, UploadId=upload_id)
        except (ClientError, StoreUnavailable, StoreFailed) as exc:  # swept on the next start
            logger.warning("could not abort the multipart upload of %s: %s", key, exc)

    async def open_chunks(self, key: str) -> AsyncIterator[bytes]:
        try:
            answer = await self._call("read the image", self._client.get_object, Key=_checked(key))
        except ClientError as exc:
            if _is_missing(exc):
                raise NotFound("Image not found") from exc
            raise _translate(exc, "read the image") from exc
        return _stream(answer["Body"], key)

    async def exists(self, key: str) -> bool:
        try:
            await self._call("look up the image", self._client.head_object, Key=_checked(key))
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise _translate(exc, "look up the image") from exc
        return True

    async def delete(self, key: str) -> None:
        try:
            await self._call("delete the image", self._client.delete_object, Key=_checked(key))
        except ClientError as exc:
            if not _is_missing(exc):  # absent keys (and buckets) are fine
                raise _translate(exc, "delete the image") from exc

    async def check(self) -> None:
        await asyncio.to_thread(self.scratch.check)
        self._bucket_ready = False  # ask the store itself, not our memory of it
        await self._ensure_bucket()


async def _stream(body: Any, key: str) -> AsyncIterator[bytes]:
    """The object's bytes; a store failing mid-stream cuts the response (the status is sent)."""
    try:
        async for chunk in body.iter_chunks(READ_CHUNK_BYTES):
            yield chunk
    except (TimeoutError, BotoCoreError, aiohttp.ClientError) as exc:
        logger.warning("the image store failed while sending %s: %s", key, type(exc).__name__)
        raise _translate(exc, "read the image") from exc
    finally:
        body.close()
