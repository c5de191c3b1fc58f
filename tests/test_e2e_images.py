"""Images end to end through the real launcher (docs/api.md §8): mobile_service (the app's one base URL,
forwarding to image_service) and image_service as real processes, the project's OpenAI-protocol
upstream as the image provider. One suite start for the module."""

from __future__ import annotations

import hashlib
import io
import os
import select
import signal
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import ExifTags, Image

from image_service.tests.conftest import jpeg_with_gps, png_bytes
from tests.auth import bearer
from tests.fixtures.launcher import Suite

pytestmark = pytest.mark.e2e

FINAL = {"succeeded", "partial", "failed", "cancelled"}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def suite(launch_suite: Callable[..., Suite], fake_llm_url: str) -> Suite:
    return launch_suite(
        "mobile_service",
        "image_service",
        env={"LLM_BASE_URL": fake_llm_url, "LLM_API_KEY": "e2e-key", "GENERATION_BACKOFF_SECONDS": "0.1"},
    )


def upload(base: str, token: str, data: bytes, name: str = "photo.jpg") -> httpx.Response:
    return httpx.post(
        f"{base}/api/v1/images", headers=bearer(token), files={"file": (name, data, "image/jpeg")}, timeout=30
    )


def wait_task(base: str, token: str, task_id: str, timeout: float = 90.0, until: set[str] = FINAL) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            task = httpx.get(f"{base}/api/v1/generations/{task_id}", headers=bearer(token), timeout=10)
        except httpx.TransportError:  # the service is restarting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        if task.status_code == 200 and (task.json()["status"] in until or time.monotonic() > deadline):
            return task.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} unreadable: {task.status_code} {task.text}")
        time.sleep(0.2)


def memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0])
    return fields


def post_chunked_multipart(url: str, token: str, size: int) -> bytes:
    """POST a multipart upload of ``size`` bytes with chunked transfer encoding (no Content-Length,
    so only the streaming check can refuse it) over a raw socket; stops sending once an answer
    arrives. Returns the response head."""
    host, port = url.removeprefix("http://").split(":")
    boundary = "e2e-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    chunk = b"\xff" * 65536
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /api/v1/images HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        parts = [head, *([chunk] * (size // len(chunk))), f"\r\n--{boundary}--\r\n".encode()]
        try:
            for part in parts:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered already
                sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            else:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed after answering
        response = b""
        while b"\r\n\r\n" not in response:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    return response


def test_jpeg_with_gps_is_stored_clean_with_a_smaller_thumbnail(suite: Suite, issue_token: Callable[..., str]) -> None:
    base, token = suite.url("mobile_service"), issue_token()  # through mobile_service's forwarding
    created = upload(base, token, jpeg_with_gps(size=(640, 480), orientation=1))
    assert created.status_code == 201, created.text
    body = created.json()
    content = httpx.get(f"{base}{body['url']}", headers=bearer(token))
    assert content.status_code == 200 and content.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(content.content).hexdigest() == body["sha256"]
    exif = Image.open(io.BytesIO(content.content)).getexif()
    assert ExifTags.Base.GPSInfo not in exif and not exif.get_ifd(ExifTags.IFD.GPSInfo)
    stored = list(Path(suite.env["IMAGE_STORAGE_DIR"]).rglob(f"{body['id']}.jpg"))
    assert len(stored) == 1 and b"GPS" not in stored[0].read_bytes()[:4096].replace(b"GPSInfo", b"")

    thumb = httpx.get(f"{base}{body['thumbnail_url']}", headers=bearer(token))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    image = Image.open(io.BytesIO(thumb.content))
    image.load()
    assert max(image.size) < 640 and len(thumb.content) < body["size"]
    again = httpx.get(
        f"{base}{body['thumbnail_url']}", headers={**bearer(token), "If-None-Match": thumb.headers["etag"]}
    )
    assert again.status_code == 304


def test_fake_bytes_are_415_and_someone_elses_image_is_404(suite: Suite, issue_token: Callable[..., str]) -> None:
    base, owner, stranger = suite.url("mobile_service"), issue_token(), issue_token()
    fake = upload(base, owner, b"just some text in a file named like a picture\n" * 10, "x.png")
    assert fake.status_code == 415 and fake.json()["code"] == "unsupported_media_type"
    body = upload(base, owner, png_bytes((30, 30), (1, 99, 1)), "p.png").json()
    for path in (body["url"], body["thumbnail_url"], f"/api/v1/images/{body['id']}"):
        response = httpx.get(f"{base}{path}", headers=bearer(stranger))
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert httpx.delete(f"{base}/api/v1/images/{body['id']}", headers=bearer(stranger)).status_code == 404


def test_11_mb_upload_is_413_without_the_memory_growing(suite: Suite, issue_token: Callable[..., str]) -> None:
    base, token = suite.url("image_service"), issue_token()
    assert upload(base, token, png_bytes((64, 64)), "warm.png").status_code == 201  # warm the code path
    declared = httpx.post(
        f"{base}/api/v1/images", headers=bearer(token), files={"file": ("big.jpg", b"\xff" * (11 * MB), "image/jpeg")}
    )
    assert declared.status_code == 413 and declared.json()["code"] == "payload_too_large"

    pid = suite.pid_of("image_service")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    before = memory_kb(pid)
    head = post_chunked_multipart(base, token, 11 * MB)
    after = memory_kb(pid)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    growth_mb = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(f"image_service peak RSS growth during an 11 MB chunked upload: {growth_mb:.1f} MB")
    assert growth_mb < 5, f"peak RSS grew by {growth_mb:.1f} MB"
    assert not any(Path(suite.env["IMAGE_STORAGE_DIR"], ".tmp").iterdir())


def test_large_uploads_and_downloads_pass_through_mobile_service(suite: Suite, issue_token: Callable[..., str]) -> None:
    base, token = suite.url("mobile_service"), issue_token()
    noise = Image.frombytes("RGB", (1000, 1000), os.urandom(3_000_000))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 2 * MB
    created = upload(base, token, buffer.getvalue(), "noise.png")
    assert created.status_code == 201, created.text
    content = httpx.get(f"{base}{created.json()['url']}", headers=bearer(token))
    assert hashlib.sha256(content.content).hexdigest() == created.json()["sha256"]
    assert Image.open(io.BytesIO(content.content)).tobytes() == noise.tobytes()  # lossless PNG kept
    again = upload(base, token, buffer.getvalue(), "noise-again.png")  # docs/api.md §8: a duplicate is 201 too
    assert again.status_code == 201 and again.json() == created.json()
    too_big = upload(base, token, b"\xff" * (11 * MB), "big.jpg")
    assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"


def test_published_records_image_is_public_until_unpublished(suite: Suite, issue_token: Callable[..., str]) -> None:
    base = suite.url("mobile_service")
    owner_id = str(uuid.uuid4())
    token = issue_token(owner_id)
    image = upload(base, token, png_bytes((90, 60), (250, 200, 0)), "trip.png").json()
    content_url = f"{base}{image['url']}"
    assert httpx.get(content_url).status_code == 404

    record = httpx.post(
        f"{base}/api/v1/records",
        headers=bearer(token),
        json={"title": "Trip", "content": "photos", "attachments": [image["id"]]},
    )
    assert record.status_code == 201, record.text
    record_id = record.json()["id"]
    published = httpx.post(f"{base}/api/v1/records/{record_id}/publish", headers=bearer(token))
    assert published.status_code == 200, published.text

    public = httpx.get(content_url)  # no token at all
    assert public.status_code == 200 and public.headers["cache-control"].startswith("public")
    assert hashlib.sha256(public.content).hexdigest() == image["sha256"]
    assert httpx.get(f"{base}{image['thumbnail_url']}").status_code == 200

    assert httpx.delete(f"{base}/api/v1/records/{record_id}/publish", headers=bearer(token)).status_code == 200
    assert httpx.get(content_url).status_code == 404
    assert httpx.get(content_url, headers=bearer(token)).status_code == 200


def test_generation_with_one_failing_result_ends_partial_with_two_images(
    suite: Suite, issue_token: Callable[..., str]
) -> None:
    base, token = suite.url("mobile_service"), issue_token()
    created = httpx.post(
        f"{base}/api/v1/generations",
        headers=bearer(token),
        json={"prompt": "a red bicycle [[fail-result:2]]", "n": 3, "size": "96x64"},
    )
    assert created.status_code == 202 and created.json()["status"] == "pending", created.text
    task = wait_task(base, token, created.json()["id"])
    assert task["status"] == "partial", task
    images = [r["image_id"] for r in task["results"] if r["status"] == "succeeded"]
    assert len(images) == 2 and task["results"][2]["status"] == "failed"
    for image_id in images:
        content = httpx.get(f"{base}/api/v1/images/{image_id}/content", headers=bearer(token))
        assert content.status_code == 200 and Image.open(io.BytesIO(content.content)).size == (96, 64)


def test_task_interrupted_by_kill_9_finishes_after_the_restart(suite: Suite, issue_token: Callable[..., str]) -> None:
    base, token = suite.url("image_service"), issue_token()
    created = httpx.post(
        f"{base}/api/v1/generations",
        headers=bearer(token),
        json={"prompt": "a slow sunrise [[slow:4]]", "n": 2, "size": "32x32"},
    )
    assert created.status_code == 202
    task_id = created.json()["id"]
    assert wait_task(base, token, task_id, timeout=30, until={"running", *FINAL})["status"] == "running"
    old_pid = suite.pid_of("image_service")
    os.kill(old_pid, signal.SIGKILL)

    assert suite.wait_for_output("image_service exited with code -9", timeout=30), suite.text()[-3000:]
    task = wait_task(base, token, task_id, timeout=90)
    assert task["status"] == "succeeded", task
    assert all(r["image_id"] for r in task["results"])
    assert suite.pid_of("image_service") != old_pid
    assert "resuming 1 generation task(s)" in suite.text()  # picked up by the restarted process
