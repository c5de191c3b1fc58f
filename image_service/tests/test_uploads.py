"""Uploads and serving, in-process against a real SQLite file, a real Redis and a temp storage dir."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import ExifTags, Image

from image_service.app.config import image_limit_detail
from image_service.tests.conftest import (
    add_record,
    auth,
    jpeg_with_gps,
    png_bytes,
    scratch_files,
    stored_objects,
    upload,
)
from tests.auth import bearer


def test_jpeg_upload_is_upright_and_has_no_location(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    original = jpeg_with_gps(size=(64, 32), orientation=6)
    response = upload(client, token, original)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "mime", "width", "height", "size", "sha256", "url", "thumbnail_url", "created_at"}
    assert body["mime"] == "image/jpeg"
    assert (body["width"], body["height"]) == (32, 64)  # orientation 6 applied to the pixels
    assert body["url"] == f"/api/v1/images/{body['id']}/content"

    content = client.get(body["url"], headers=auth(token))
    assert content.status_code == 200
    assert content.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(content.content).hexdigest() == body["sha256"] == content.headers["etag"].strip('"')
    assert content.headers["cache-control"].startswith("private")
    stored = Image.open(io.BytesIO(content.content))
    exif = stored.getexif()
    assert ExifTags.Base.GPSInfo not in exif
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert ExifTags.Base.Orientation not in exif
    assert exif.get(ExifTags.Base.Make) == "TestCam"  # the rest of the EXIF is kept
    assert b"TestCam" in content.content and len(content.content) == body["size"]


def test_thumbnail_is_a_smaller_valid_image_made_once(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    body = upload(client, token, png_bytes((800, 600)), "big.png").json()
    assert body["mime"] == "image/png" and (body["width"], body["height"]) == (800, 600)

    first = client.get(body["thumbnail_url"], headers=auth(token))
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/webp"
    thumb = Image.open(io.BytesIO(first.content))
    thumb.load()
    assert max(thumb.size) == 320 and thumb.size == (320, 240)
    assert len(first.content) < body["size"]
    thumbnail = f"thumbnails/{body['id'][:2]}/{body['id']}.webp"
    made = stored_objects(client)[thumbnail]
    second = client.get(body["thumbnail_url"], headers=auth(token))
    assert second.content == first.content
    assert stored_objects(client)[thumbnail] == made  # served from the stored thumbnail, not made again


def test_etag_revalidation_answers_304(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    body = upload(client, token, png_bytes((40, 40)), "small.png").json()
    for path in (body["url"], body["thumbnail_url"]):
        first = client.get(path, headers=auth(token))
        etag = first.headers["etag"]
        again = client.get(path, headers={**auth(token), "If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag and "cache-control" in again.headers
        changed = client.get(path, headers={**auth(token), "If-None-Match": '"something-else"'})
        assert changed.status_code == 200


def test_same_bytes_again_return_the_existing_image(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    data = png_bytes((30, 20), (1, 2, 3))
    first = upload(client, token, data, "a.png")
    second = upload(client, token, data, "renamed.png")
    # docs/api.md §8: POST /images → 201, a duplicate too, with the existing image (the same body).
    assert first.status_code == 201 and second.status_code == 201
    assert second.json() == first.json()
    listed = client.get("/api/v1/images", headers=bearer(token)).json()
    assert listed["total_count"] == 1
    other_user = upload(client, issue_token(), data, "a.png")
    assert other_user.status_code == 201 and other_user.json()["id"] != first.json()["id"]


def test_the_same_bytes_with_a_bogus_record_id_are_refused_like_a_first_upload(
    client: TestClient, issue_token: Callable[..., str]
) -> None:
    owner_id = str(uuid.uuid4())
    token = issue_token(owner_id)
    data = png_bytes((31, 21), (4, 5, 6))
    first = upload(client, token, data, "a.png")
    assert first.status_code == 201, first.text
    strangers_record = add_record(client, str(uuid.uuid4()), [], visibility="private")
    for record_id in (str(uuid.uuid4()), strangers_record, "not-a-record-id"):
        never_seen = upload(client, token, png_bytes((33, 23), (7, 8, 9)), "b.png", record_id=record_id)
        again = upload(client, token, data, "a.png", record_id=record_id)
        assert never_seen.status_code == 404 and never_seen.json()["code"] == "not_found", record_id
        assert again.status_code == 404 and again.json() | {"request_id": None} == never_seen.json() | {
            "request_id": None
        }, record_id
    own_record = add_record(client, owner_id, [], visibility="private")
    again = upload(client, token, data, "a.png", record_id=own_record)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert client.get("/api/v1/images", headers=bearer(token)).json()["total_count"] == 1


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("x.png", b"this is plain text, not a picture\n" * 20),
        ("doc.jpg", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
        ("truncated.jpg", jpeg_with_gps()[:200]),
    ],
)
def test_bytes_that_are_not_an_accepted_image_are_415(
    client: TestClient, issue_token: Callable[..., str], name: str, data: bytes
) -> None:
    response = upload(client, issue_token(), data, name)
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported_media_type"


def test_a_bmp_is_a_real_image_but_not_an_accepted_type(client: TestClient, issue_token: Callable[..., str]) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, format="BMP")
    response = upload(client, issue_token(), buffer.getvalue(), "x.png")
    assert response.status_code == 415


def test_decompression_bomb_is_refused_with_413(client: TestClient, issue_token: Callable[..., str]) -> None:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")  # ~12 KB on disk, 100 Mpx decoded
    assert len(buffer.getvalue()) < 100_000
    response = upload(client, issue_token(), buffer.getvalue(), "bomb.png")
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"


def gif_of_tiny_frames(count: int) -> bytes:
    """A valid GIF of ``count`` 1×1 frames, written block by block (Pillow would take minutes)."""
    header = b"GIF89a" + b"\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00" + b"\x02\x02\x44\x01\x00"
    return header + frame * count + b"\x3b"


def test_an_animation_of_too_many_frames_is_refused_before_decoding(
    client: TestClient, issue_token: Callable[..., str]
) -> None:
    token = issue_token()
    # 400,000 frames of one pixel each: far under the pixel cap, 6 MB, 40 s of decoding before the fix.
    response = upload(client, token, gif_of_tiny_frames(400_000), "frames.gif")
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    assert "frames" in response.json()["detail"]
    assert client.get("/api/v1/images", headers=auth(token)).json()["total_count"] == 0
    # At the limit the same kind of file is an ordinary animation.
    accepted = upload(client, token, gif_of_tiny_frames(1000), "ok.gif")
    assert accepted.status_code == 201, accepted.text


def test_animated_gif_keeps_its_frames(client: TestClient, issue_token: Callable[..., str]) -> None:
    frames = [Image.new("RGB", (16, 16), (i * 60, 255 - i * 60, 0)) for i in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    token = issue_token()
    body = upload(client, token, buffer.getvalue(), "anim.gif").json()
    assert body["mime"] == "image/gif"
    stored = Image.open(io.BytesIO(client.get(body["url"], headers=auth(token)).content))
    assert getattr(stored, "n_frames", 1) == 4
    assert client.get(body["thumbnail_url"], headers=auth(token)).status_code == 200


def test_webp_upload_is_accepted(client: TestClient, issue_token: Callable[..., str]) -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (50, 40), (0, 200, 0, 128)).save(buffer, format="WEBP")
    response = upload(client, issue_token(), buffer.getvalue(), "pic.bin")
    assert response.status_code == 201 and response.json()["mime"] == "image/webp"


@pytest.fixture(scope="module")
def small_limit_client(image_app_factory: Callable[..., Any]) -> Iterator[TestClient]:
    with TestClient(image_app_factory(image_max_bytes=100_000, llm_api_key=None)) as c:
        yield c


def test_upload_over_the_limit_is_413_and_leaves_nothing_behind(
    small_limit_client: TestClient, issue_token: Callable[..., str]
) -> None:
    token = issue_token()
    boundary = "b0undary"

    def chunked_body() -> Iterator[bytes]:  # no Content-Length: only the streaming check can stop it
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        for _ in range(30):
            yield b"\xff" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    response = small_limit_client.post(
        "/api/v1/images",
        headers={**auth(token), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=chunked_body(),
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["detail"] == "Images are limited to 97.7 KB"  # IMAGE_MAX_BYTES=100000
    declared = small_limit_client.post(
        "/api/v1/images", headers=auth(token), files={"file": ("big.jpg", b"\xff" * 300_000, "image/jpeg")}
    )
    assert declared.status_code == 413 and declared.json()["detail"] == "Images are limited to 97.7 KB"
    assert stored_objects(small_limit_client) == {}
    assert scratch_files(small_limit_client) == []
    assert small_limit_client.get("/api/v1/images", headers=auth(token)).json()["total_count"] == 0


def test_a_20_mb_upload_is_413_naming_the_10_mb_image_limit(
    client: TestClient, issue_token: Callable[..., str]
) -> None:
    token = issue_token()
    twenty_mb = b"\xff" * (20 * 1024 * 1024)
    declared = upload(client, token, twenty_mb, "big.jpg")  # refused on its Content-Length
    assert declared.status_code == 413 and declared.json()["code"] == "payload_too_large"
    assert declared.json()["detail"] == "Images are limited to 10 MB"
    just_over = upload(client, token, b"\xff" * (10 * 1024 * 1024 + 1), "big.jpg")  # by the upload parser
    assert just_over.status_code == 413 and just_over.json()["detail"] == "Images are limited to 10 MB"


@pytest.mark.parametrize(
    ("max_bytes", "detail"),
    [
        (10 * 1024 * 1024, "Images are limited to 10 MB"),
        (5 * 1024 * 1024 // 2, "Images are limited to 2.5 MB"),
        (100_000, "Images are limited to 97.7 KB"),
    ],
)
def test_the_image_limit_is_said_in_mb(max_bytes: int, detail: str) -> None:
    assert image_limit_detail(max_bytes) == detail


def test_malformed_requests_get_the_error_shape(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    no_auth = client.post("/api/v1/images", files={"file": ("a.png", png_bytes((5, 5)), "image/png")})
    assert no_auth.status_code == 401 and no_auth.json()["code"] == "not_authenticated"
    not_multipart = client.post("/api/v1/images", headers=auth(token), json={"file": "x"})
    assert not_multipart.status_code == 400 and not_multipart.json()["code"] == "bad_request"
    no_file = client.post("/api/v1/images", headers=auth(token), files={"other": ("a.png", b"x", "image/png")})
    assert no_file.status_code == 400
    broken = client.post(
        "/api/v1/images",
        headers={**auth(token), "Content-Type": "multipart/form-data; boundary=zzz"},
        content=b"--zzz\r\nthis is not a part header at all",
    )
    assert broken.status_code == 400
    assert set(broken.json()) == {"detail", "code", "request_id"}


def test_someone_elses_image_is_404_everywhere(client: TestClient, issue_token: Callable[..., str]) -> None:
    owner, stranger = issue_token(), issue_token()
    body = upload(client, owner, png_bytes((20, 20), (9, 9, 9)), "mine.png").json()
    image_id = body["id"]
    for path in (f"/api/v1/images/{image_id}", body["url"], body["thumbnail_url"]):
        response = client.get(path, headers=auth(stranger))
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert client.get(body["url"]).status_code == 404  # no token, not published
    assert client.delete(f"/api/v1/images/{image_id}", headers=auth(stranger)).status_code == 404
    assert all(i["id"] != image_id for i in client.get("/api/v1/images", headers=auth(stranger)).json()["data"])
    assert client.get(body["url"], headers=auth(owner)).status_code == 200
    for hostile in ("..%2F..%2Fetc%2Fpasswd", "%25%25", "x" * 300, str(uuid.uuid4())):
        assert client.get(f"/api/v1/images/{hostile}/content", headers=auth(owner)).status_code == 404


def test_bad_token_on_content_is_401(client: TestClient, issue_token: Callable[..., str]) -> None:
    body = upload(client, issue_token(), png_bytes((12, 12)), "t.png").json()
    response = client.get(body["url"], headers=auth("not-a-jwt"))
    assert response.status_code == 401 and response.json()["code"] == "invalid_token"


def test_list_is_paginated_newest_first(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    ids = [upload(client, token, png_bytes((10 + i, 10)), f"{i}.png").json()["id"] for i in range(3)]
    page = client.get("/api/v1/images?limit=2", headers=auth(token)).json()
    assert page["total_count"] == 3 and page["has_more"] is True and page["limit"] == 2 and page["offset"] == 0
    rest = client.get("/api/v1/images?limit=2&offset=2", headers=auth(token)).json()
    assert rest["has_more"] is False
    assert [i["id"] for i in page["data"] + rest["data"]] == list(reversed(ids))
    assert client.get("/api/v1/images?limit=1000", headers=auth(token)).status_code == 422


def test_delete_removes_the_file_and_its_thumbnail(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    body = upload(client, token, png_bytes((50, 50), (7, 7, 7)), "gone.png").json()
    client.get(body["thumbnail_url"], headers=auth(token))
    mine = {key for key in stored_objects(client) if body["id"] in key}
    assert mine == {f"originals/{body['id'][:2]}/{body['id']}.png", f"thumbnails/{body['id'][:2]}/{body['id']}.webp"}
    assert client.delete(f"/api/v1/images/{body['id']}", headers=auth(token)).status_code == 204
    assert not mine & set(stored_objects(client))
    assert client.get(body["url"], headers=auth(token)).status_code == 404
    assert client.delete(f"/api/v1/images/{body['id']}", headers=auth(token)).status_code == 404


def test_client_file_names_never_reach_the_filesystem(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    before = set(stored_objects(client))
    response = upload(client, token, png_bytes((13, 17), (4, 4, 4)), "../../../escape.png")
    assert response.status_code == 201
    image_id = response.json()["id"]
    assert set(stored_objects(client)) - before == {f"originals/{image_id[:2]}/{image_id}.png"}
    root = Path(client.app_state["settings"].image_storage_dir)  # type: ignore[attr-defined]
    assert not list(root.parent.rglob("escape.png"))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_gps_is_removed_from_png_and_webp_too(client: TestClient, issue_token: Callable[..., str], fmt: str) -> None:
    exif = Image.open(io.BytesIO(jpeg_with_gps())).getexif()
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), (90, 90, 90)).save(buffer, format=fmt, exif=exif.tobytes())
    assert Image.open(io.BytesIO(buffer.getvalue())).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the input has GPS
    token = issue_token()
    body = upload(client, token, buffer.getvalue(), f"x.{fmt.lower()}").json()
    stored = Image.open(io.BytesIO(client.get(body["url"], headers=auth(token)).content))
    assert not stored.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert ExifTags.Base.GPSInfo not in stored.getexif()


def test_json_routes_keep_the_common_body_limit(client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    # 2 MiB of JSON: over the common 1 MiB limit, far under the upload limit.
    response = client.post("/api/v1/generations", json={"prompt": "x" * (2 * 1024 * 1024), "n": 1}, headers=auth(token))
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    # A 2 MB image still goes through the upload route.
    big = Image.effect_noise((1024, 700), 64).convert("RGB")
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 1024 * 1024
    assert upload(client, token, buffer.getvalue(), "noise.png").status_code == 201
