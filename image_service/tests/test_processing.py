"""Malformed images: whatever the bytes, the answer is an accepted image, 413 or 415, never a 500."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from common.errors import PayloadTooLarge, UnsupportedMediaType
from image_service.app.processing import clean_image
from image_service.tests.conftest import jpeg_with_gps, png_bytes, upload


def seed_images() -> list[bytes]:
    frames = [Image.new("RGB", (16, 16), (i * 60, 0, 0)) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    webp = io.BytesIO()
    Image.new("RGBA", (20, 20)).save(webp, format="WEBP")
    return [jpeg_with_gps(), png_bytes((40, 30)), gif.getvalue(), webp.getvalue()]


def mutations(count: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    seeds = seed_images()
    found = []
    for _ in range(count):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 8)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        found.append(bytes(data))
    return found


def test_mutated_images_are_accepted_or_refused_cleanly(tmp_path: Path) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    outcomes = {"ok": 0, "refused": 0}
    for data in mutations(400, seed=7):
        source.write_bytes(data)
        try:
            clean_image(source, target, 40_000_000, 1000)
            outcomes["ok"] += 1
        except (UnsupportedMediaType, PayloadTooLarge):
            outcomes["refused"] += 1
    assert outcomes["ok"] and outcomes["refused"]  # both paths were exercised


def test_mutated_uploads_never_answer_500(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    for data in mutations(25, seed=11):
        response = upload(client, token, data, "fuzz.jpg")
        assert response.status_code in (200, 201, 413, 415), response.text


def test_mutated_multipart_framing_never_answers_500(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    boundary = "fuzz-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="record_id"\r\n\r\nabc\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png_bytes((8, 8))
        + f"\r\n--{boundary}--\r\n".encode()
    )
    rnd = random.Random(3)
    for _ in range(40):
        data = bytearray(body)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(200)] = rnd.randrange(256)  # hit the part headers and boundaries
        response = client.post(
            "/api/v1/images",
            headers={"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
            content=bytes(data),
        )
        assert response.status_code in (200, 201, 400, 404, 413, 415), response.text
