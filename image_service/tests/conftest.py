from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import ExifTags, Image

from common.models.record import Record
from image_service.app.config import ImageSettings
from image_service.main import build_app
from tests.auth import bearer
from tests.fixtures.s3 import image_storage_under_test
from tests.s3_server import S3Server

FINAL_STATUSES = {"succeeded", "partial", "failed", "cancelled"}


def jpeg_with_gps(size: tuple[int, int] = (64, 32), orientation: int = 6) -> bytes:
    """A real JPEG carrying EXIF GPS coordinates, a camera make and an orientation tag."""
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, size[0] // 2, size[1]))  # left half blue: shows the rotation
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (48.0, 51.0, 29.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (2.0, 17.0, 40.0),
    }
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=90)
    return buffer.getvalue()


def png_bytes(size: tuple[int, int] = (800, 600), colour: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    image = Image.new("RGB", size, colour)
    for x in range(0, size[0], 7):  # some detail, so the file is not trivially small
        image.putpixel((x, (x * 13) % size[1]), (255, 255, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def stored_objects(client: TestClient) -> dict[str, str]:
    """What the app's store holds, as an operator would list it: key → a stamp that changes when
    the object is written again (the file's mtime on disk; the bucket's LastModified and ETag)."""
    settings = client.app_state["settings"]  # type: ignore[attr-defined]
    if settings.image_storage == "s3":
        bucket = S3Server.client_for(settings)
        pages = bucket.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket)
        return {o["Key"]: f"{o['LastModified']}{o['ETag']}" for page in pages for o in page.get("Contents", [])}
    root = Path(settings.image_storage_dir)
    return {
        p.relative_to(root).as_posix(): str(p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and ".tmp" not in p.relative_to(root).parts
    }


def scratch_files(client: TestClient) -> list[Path]:
    """Scratch files of uploads in progress (local on both backends); none once requests end."""
    return sorted((Path(client.app_state["settings"].image_storage_dir) / ".tmp").glob("*"))  # type: ignore[attr-defined]


def auth(token: str) -> dict[str, str]:
    return bearer(token)


def upload(client: Any, token: str, data: bytes, name: str = "photo.jpg", **fields: str) -> Any:
    return client.post(
        "/api/v1/images", headers=auth(token), files={"file": (name, data, "application/octet-stream")}, data=fields
    )


def run_db(client: TestClient, work: Callable[[Any], Any]) -> Any:
    async def _run() -> Any:
        async with client.app_state["db"].session() as session:  # type: ignore[attr-defined]
            result = await work(session)
            await session.commit()
            return result

    return client.portal.call(_run)  # type: ignore[union-attr]


def add_record(client: TestClient, owner_id: str, attachments: list[str], visibility: str = "public") -> str:
    record_id = str(uuid.uuid4())

    async def _add(session: Any) -> None:
        session.add(
            Record(
                id=record_id,
                owner_id=owner_id,
                title="trip",
                visibility=visibility,
                slug=uuid.uuid4().hex if visibility == "public" else None,
                attachments=attachments,
            )
        )

    run_db(client, _add)
    return record_id


def wait_for_task(client: Any, token: str, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = client.get(f"/api/v1/generations/{task_id}", headers=auth(token)).json()
        if task["status"] in FINAL_STATUSES or time.monotonic() > deadline:
            return task
        time.sleep(0.1)


@pytest.fixture(scope="module")
def image_app_factory(
    make_settings: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Callable[..., Any]:
    """In-process image_service apps on local disk, or with ``TEST_IMAGE_STORAGE=s3`` on the run's
    S3 server: there, apps that share a storage directory (replicas) share a bucket, and each
    other app has a bucket of its own, as each has a directory of its own on disk."""
    s3_server = request.getfixturevalue("s3_server") if image_storage_under_test() == "s3" else None

    def _build(**overrides: Any) -> Any:
        values = {"image_storage_dir": str(tmp_path_factory.mktemp("images")), **overrides}
        if s3_server is not None:
            bucket = "test-" + hashlib.sha256(values["image_storage_dir"].encode()).hexdigest()[:20]
            values = {**s3_server.settings(bucket), **values}
        return build_app(make_settings(ImageSettings, "image_service", **values), configure_logging=False)

    return _build


@pytest.fixture(scope="module")
def client(image_app_factory: Callable[..., Any]) -> Iterator[TestClient]:
    with TestClient(image_app_factory(llm_api_key=None)) as c:
        yield c
