"""image_service on an S3-protocol store (docs/api.md §8 "Storage"), against moto's server on
loopback: objects in the bucket, large files in parts, cancelled uploads leave no parts, an
outage is a 503 that heals without a restart, and local images migrate into the bucket."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from common.config import REPO_ROOT, load_settings
from image_service.app.config import MB, ImageSettings
from image_service.app.s3_storage import S3Storage
from image_service.app.storage import new_key
from image_service.tests.conftest import auth, png_bytes, scratch_files, upload
from tests.s3_server import S3Server


def bucket_keys(server: S3Server, bucket: str) -> set[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: its re-encoding is about width × height × 3 bytes."""
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def s3_app(image_app_factory: Callable[..., Any], s3_server: S3Server) -> Callable[..., TestClient]:
    def _app(**overrides: Any) -> TestClient:
        values = {**s3_server.settings(), "llm_api_key": None, **overrides}
        return TestClient(image_app_factory(**values))

    return _app


def test_images_live_in_the_bucket_and_vanish_on_delete(
    s3_app: Callable[..., TestClient], s3_server: S3Server, issue_token: Callable[..., str]
) -> None:
    bucket = f"made-by-the-service-{uuid.uuid4().hex[:8]}"
    with s3_app(s3_bucket=bucket) as client:
        assert client.get("/ready").json()["checks"]["storage"] == "ok"
        s3_server.client().head_bucket(Bucket=bucket)  # created at start: it did not exist

        token = issue_token()
        body = upload(client, token, png_bytes((400, 300)), "trip.png").json()
        original = f"originals/{body['id'][:2]}/{body['id']}.png"
        assert bucket_keys(s3_server, bucket) == {original}
        stored = s3_server.client().get_object(Bucket=bucket, Key=original)
        assert stored["ContentType"] == "image/png"
        assert hashlib.sha256(stored["Body"].read()).hexdigest() == body["sha256"]

        content = client.get(body["url"], headers=auth(token))
        assert content.status_code == 200 and content.headers["content-type"] == "image/png"
        assert hashlib.sha256(content.content).hexdigest() == body["sha256"]
        assert content.headers["etag"] == f'"{body["sha256"]}"'
        assert content.headers["cache-control"].startswith("private")
        revalidated = client.get(body["url"], headers={**auth(token), "If-None-Match": content.headers["etag"]})
        assert revalidated.status_code == 304

        thumbnail = client.get(body["thumbnail_url"], headers=auth(token))
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(thumbnail.content)).size == (320, 240)
        assert bucket_keys(s3_server, bucket) == {original, f"thumbnails/{body['id'][:2]}/{body['id']}.webp"}

        other = issue_token()  # the owner check still holds: the bucket is never exposed
        assert client.get(body["url"], headers=auth(other)).status_code == 404

        assert client.delete(f"/api/v1/images/{body['id']}", headers=auth(token)).status_code == 204
        assert bucket_keys(s3_server, bucket) == set()
        assert client.get(body["url"], headers=auth(token)).status_code == 404
        assert scratch_files(client) == []


def test_a_large_image_goes_up_as_a_multipart_upload(
    s3_app: Callable[..., TestClient], s3_server: S3Server, issue_token: Callable[..., str]
) -> None:
    bucket = f"large-{uuid.uuid4().hex[:8]}"
    data = noise_png(1800, 1700)  # ~9.2 MB after re-encoding: two parts of 8 MiB
    assert len(data) > 8 * MB
    with s3_app(s3_bucket=bucket, image_max_bytes=20 * MB) as client:
        token = issue_token()
        response = upload(client, token, data, "noise.png")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["size"] > 8 * MB
        key = f"originals/{body['id'][:2]}/{body['id']}.png"
        head = s3_server.client().head_object(Bucket=bucket, Key=key)
        assert head["ETag"].strip('"').endswith("-2")  # S3's ETag of a two-part multipart object
        assert head["ContentLength"] == body["size"]
        assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        content = client.get(body["url"], headers=auth(token))
        assert hashlib.sha256(content.content).hexdigest() == body["sha256"]


def test_a_cancelled_multipart_upload_leaves_no_parts(
    s3_server: S3Server, make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    """A task cancelled mid-upload (client gone, shutdown) aborts its multipart upload. The source
    is a pipe fed part by part, so the upload is certainly half-way when it is cancelled."""
    bucket = f"cancel-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        ImageSettings, "image_service", image_storage_dir=str(tmp_path), **s3_server.settings(bucket)
    )
    fifo = tmp_path / "source"
    os.mkfifo(fifo)
    release = threading.Event()

    def feed() -> None:
        with fifo.open("wb") as pipe:
            pipe.write(b"\x01" * settings.s3_part_bytes + b"\x02")  # one full part and the start of a second
            release.wait(30)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    key = new_key("originals", "png")

    async def scenario() -> tuple[list[Any], bool]:
        storage = S3Storage(settings)
        await storage.open()
        try:
            task = asyncio.create_task(storage.put_file(key, fifo))
            deadline = time.monotonic() + 30
            while not s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads"):
                assert time.monotonic() < deadline and not task.done(), "the multipart upload never started"
                await asyncio.sleep(0.05)
            task.cancel()
            release.set()  # the reader thread sees the end of the pipe and lets go
            with pytest.raises(asyncio.CancelledError):
                await task
            return s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []), await storage.exists(
                key
            )
        finally:
            release.set()
            await storage.close()

    pending, stored = asyncio.run(scenario())
    feeder.join(5)
    assert pending == [] and stored is False


def test_uploads_abandoned_by_a_dead_process_are_aborted_at_the_next_start(
    s3_server: S3Server, make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    """moto dates every multipart upload in 2010, so here it is always older than the hour after
    which an upload counts as abandoned (a younger one, possibly another replica's, is kept)."""
    bucket = f"sweep-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    key = new_key("originals", "jpg")
    s3_server.client().create_multipart_upload(Bucket=bucket, Key=key)  # a process died after this
    settings = make_settings(
        ImageSettings, "image_service", image_storage_dir=str(tmp_path), **s3_server.settings(bucket)
    )

    async def start_once() -> None:
        storage = S3Storage(settings)
        await storage.open()
        await storage.close()

    asyncio.run(start_once())
    assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_only_server_made_keys_reach_the_store(
    s3_server: S3Server, make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    settings = make_settings(ImageSettings, "image_service", image_storage_dir=str(tmp_path), **s3_server.settings())

    async def attempt() -> None:
        storage = S3Storage(settings)
        await storage.open()
        try:
            for key in ("../originals/ab/x.jpg", "originals/ab/../../etc.jpg", "originals/ab/x.exe"):
                with pytest.raises(ValueError, match="not a storage key"):
                    await storage.open_chunks(key)
                with pytest.raises(ValueError, match="not a storage key"):
                    await storage.delete(key)
        finally:
            await storage.close()

    asyncio.run(attempt())


def test_a_stopped_store_is_503_and_recovery_needs_no_restart(
    s3_app: Callable[..., TestClient], issue_token: Callable[..., str]
) -> None:
    store = S3Server()  # a store of this test's own, to stop and bring back on the same port
    store.start()
    try:
        with s3_app(**store.settings(), s3_max_attempts=1) as client:
            token = issue_token()
            body = upload(client, token, png_bytes((60, 40)), "before.png").json()

            store.kill()
            down = client.get(body["url"], headers=auth(token))
            assert down.status_code == 503 and down.json()["code"] == "service_unavailable", down.text
            refused = upload(client, token, png_bytes((61, 40)), "during.png")
            assert refused.status_code == 503 and refused.json()["code"] == "service_unavailable"
            assert client.get(body["thumbnail_url"], headers=auth(token)).status_code == 503
            # Nothing is deleted while the bytes cannot be: no orphan object outlives its row.
            gone = client.delete(f"/api/v1/images/{body['id']}", headers=auth(token))
            assert gone.status_code == 503
            assert client.get(f"/api/v1/images/{body['id']}", headers=auth(token)).status_code == 200
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json()["checks"]["storage"].startswith("error:")
            assert "secret" not in ready.text.lower()
            assert client.get("/health").status_code == 200
            assert scratch_files(client) == []

            store.start()  # an empty store again (moto keeps nothing): the bucket is made anew
            assert client.get("/ready").status_code == 200
            after = upload(client, token, png_bytes((62, 40)), "after.png")
            assert after.status_code == 201, after.text
            assert client.get(after.json()["url"], headers=auth(token)).status_code == 200
    finally:
        store.stop()


def test_the_service_starts_while_the_store_is_down(
    s3_app: Callable[..., TestClient], issue_token: Callable[..., str]
) -> None:
    store = S3Server()
    try:
        with s3_app(**store.settings(), s3_max_attempts=1) as client:  # nothing listens yet
            assert client.get("/ready").status_code == 503
            assert upload(client, issue_token(), png_bytes((30, 30)), "x.png").status_code == 503
            store.start()
            token = issue_token()
            response = upload(client, token, png_bytes((31, 30)), "y.png")
            assert response.status_code == 201, response.text
            assert client.get(response.json()["url"], headers=auth(token)).status_code == 200
    finally:
        store.stop()


def test_migrate_storage_copies_local_images_into_the_bucket_once(
    image_app_factory: Callable[..., Any],
    s3_server: S3Server,
    make_settings: Callable[..., Any],
    issue_token: Callable[..., str],
    tmp_path: Path,
) -> None:
    local_dir = tmp_path / "images"
    token = issue_token()
    with TestClient(image_app_factory(image_storage="local", image_storage_dir=str(local_dir))) as local:
        first = upload(local, token, png_bytes((80, 60)), "a.png").json()
        second = upload(local, token, png_bytes((81, 60)), "b.png").json()
        assert local.get(first["thumbnail_url"], headers=auth(token)).status_code == 200

    bucket = f"migrated-{uuid.uuid4().hex[:8]}"
    settings = make_settings(ImageSettings, "image_service", image_storage_dir=str(local_dir))
    env = {
        **os.environ,
        **s3_server.env(bucket),
        "IMAGE_STORAGE_DIR": str(local_dir),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
    }

    def migrate(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "image_service.migrate_storage", *args]
        return subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)

    dry = migrate("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "3 to copy" in dry.stdout
    copied = migrate()
    assert copied.returncode == 0, copied.stderr
    assert "3 copied, 0 already in the bucket" in copied.stdout
    assert bucket_keys(s3_server, bucket) == {
        f"originals/{first['id'][:2]}/{first['id']}.png",
        f"originals/{second['id'][:2]}/{second['id']}.png",
        f"thumbnails/{first['id'][:2]}/{first['id']}.webp",
    }
    again = migrate()
    assert again.returncode == 0 and "0 copied, 3 already in the bucket" in again.stdout

    # A replica on the bucket, with an empty directory of its own, serves what was on disk.
    with TestClient(
        image_app_factory(**s3_server.settings(bucket), image_storage_dir=str(tmp_path / "elsewhere"))
    ) as moved:
        content = moved.get(first["url"], headers=auth(token))
        assert content.status_code == 200
        assert hashlib.sha256(content.content).hexdigest() == first["sha256"]


def test_migrate_storage_refuses_without_a_bucket_configured(tmp_path: Path) -> None:
    env = {**os.environ, "IMAGE_STORAGE": "local", "IMAGE_STORAGE_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "image_service.migrate_storage"]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "IMAGE_STORAGE=s3" in done.stderr


def test_s3_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="S3_ENDPOINT_URL"):
        load_settings(ImageSettings, "image_service", s3_endpoint_url="minio:9000")
    with pytest.raises(ValueError, match="s3_part_bytes"):
        load_settings(ImageSettings, "image_service", s3_part_bytes=1024)
