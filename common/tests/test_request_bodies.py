"""How the app factory answers request bodies it cannot use (docs/api.md §4): a JSON route sent
another media type is 415, string lengths are counted in characters, a route's own body limit says
its own sentence, and a path prefix may answer another API's error body."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Form, UploadFile
from fastapi.testclient import TestClient
from pydantic import AfterValidator, BaseModel, Field

from common.app_factory import BodyLimit, create_app
from common.config import Settings


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL is not allowed")
    return value


# A string with a validator of its own under the length limit, as mobile_service's record title:
# pydantic reports its limit as the generic "Value should have at most 200 items".
CheckedText = Annotated[str, AfterValidator(no_nul)]
Title = Annotated[CheckedText, Field(max_length=200)]
Code = Annotated[CheckedText, Field(min_length=3)]


class Note(BaseModel):
    title: Title = ""
    code: Code = "abc"
    name: Annotated[str, Field(max_length=1)] = ""
    tags: Annotated[list[str], Field(max_length=3)] = []


router = APIRouter(prefix="/t")


@router.post("/notes")
async def create_note(note: Note) -> Note:
    return note


@router.post("/form")
async def sign_in_form(username: Annotated[str, Form()]) -> dict[str, str]:
    return {"username": username}


@router.post("/upload")
async def upload(file: UploadFile) -> dict[str, Any]:
    return {"name": file.filename, "size": len(await file.read())}


@router.post("/other/echo")
async def other_echo(note: Note) -> Note:
    return note


UPLOAD_LIMIT = BodyLimit(2000, "Uploads are limited to 2 KB")


def other_api_error(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"status": status, "message": body["detail"], "code": body["code"]}}


@pytest.fixture(scope="module")
def client(make_settings: Callable[..., Any]) -> Iterator[TestClient]:
    settings = make_settings(
        Settings, "common", service_name=f"bodies_test_{uuid.uuid4().hex[:6]}", max_body_bytes=1000
    )
    app = create_app(
        settings,
        title="bodies test",
        routers=[router],
        use_database=False,
        body_limits={("POST", "/t/upload"): UPLOAD_LIMIT},
        error_shapes={"/t/other/": other_api_error},
        configure_logging=False,
    )
    with TestClient(app) as c:
        yield c


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "code", "request_id"} and body["code"] == code, body
    return body


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"data": {"title": "form data"}},
        {"content": b'{"title": "json, labelled as text"}', "headers": {"Content-Type": "text/plain"}},
        {"files": {"file": ("a.txt", b"hello")}},
    ],
    ids=["form", "text-plain", "multipart"],
)
def test_a_json_route_sent_another_media_type_is_415_naming_application_json(
    client: TestClient, request_kwargs: dict[str, Any]
) -> None:
    body = assert_error(client.post("/t/notes", **request_kwargs), 415, "unsupported_media_type")
    assert "application/json" in body["detail"] and body["detail"].startswith("This endpoint takes a JSON body")


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "application/x+json"])
def test_json_bodies_are_accepted_under_every_json_media_type(client: TestClient, content_type: str) -> None:
    response = client.post("/t/notes", content=b'{"title": "ok"}', headers={"Content-Type": content_type})
    assert response.status_code == 200 and response.json()["title"] == "ok"


def test_an_empty_or_unlabelled_body_is_still_a_validation_error_not_a_415(client: TestClient) -> None:
    body = assert_error(client.post("/t/notes", headers={"Content-Type": "text/plain"}), 422, "validation_error")
    assert body["detail"][0]["type"] == "missing"
    # No Content-Type at all: FastAPI does not parse it as JSON and says so in its 422.
    assert_error(client.post("/t/notes", content=b'{"title": "unlabelled"}'), 422, "validation_error")


def test_form_and_multipart_routes_keep_their_bodies(client: TestClient) -> None:
    assert client.post("/t/form", data={"username": "ann"}).json() == {"username": "ann"}
    assert client.post("/t/upload", files={"file": ("a.txt", b"hello")}).json() == {"name": "a.txt", "size": 5}


def test_string_length_limits_are_counted_in_characters(client: TestClient) -> None:
    long_title = assert_error(client.post("/t/notes", json={"title": "x" * 201}), 422, "validation_error")
    assert long_title["detail"] == [
        {
            "type": "string_too_long",
            "loc": ["body", "title"],
            "msg": "String should have at most 200 characters",
            "ctx": {"max_length": 200},
        }
    ]
    short = assert_error(client.post("/t/notes", json={"code": "ab"}), 422, "validation_error")["detail"][0]
    assert short["msg"] == "String should have at least 3 characters" and short["type"] == "string_too_short"
    plain = assert_error(client.post("/t/notes", json={"name": "ab"}), 422, "validation_error")["detail"][0]
    assert plain["msg"] == "String should have at most 1 character"  # pydantic's own, singular
    # A list's limit still counts items.
    tags = assert_error(client.post("/t/notes", json={"tags": ["a"] * 4}), 422, "validation_error")["detail"][0]
    assert tags["type"] == "too_long" and "items" in tags["msg"]
    assert client.post("/t/notes", json={"title": "é" * 200}).status_code == 200


def test_a_routes_own_body_limit_says_its_own_sentence(client: TestClient) -> None:
    declared = client.post("/t/upload", files={"file": ("big.bin", b"x" * 5000)})
    assert assert_error(declared, 413, "payload_too_large")["detail"] == UPLOAD_LIMIT.detail

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streaming check stops it
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        for _ in range(10):
            yield b"x" * 500
        yield b"\r\n--b--\r\n"

    streamed = client.post("/t/upload", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert assert_error(streamed, 413, "payload_too_large")["detail"] == UPLOAD_LIMIT.detail
    other = assert_error(client.post("/t/notes", json={"title": "x" * 1500}), 413, "payload_too_large")
    assert other["detail"] == "Request body exceeds 1000 bytes"  # every other route keeps the common limit


def test_a_path_prefix_answers_its_own_error_body(client: TestClient) -> None:
    refused = client.post("/t/other/echo", data={"title": "form"})
    assert refused.status_code == 415
    assert refused.json()["error"]["code"] == "unsupported_media_type" and refused.json()["error"]["status"] == 415
    missing = client.get("/t/other/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    too_large = client.post("/t/other/echo", json={"title": "x" * 1500})
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "payload_too_large"
    invalid = client.post("/t/other/echo", json={"title": 5})
    assert invalid.status_code == 422 and invalid.json()["error"]["message"][0]["loc"] == ["body", "title"]
    assert_error(client.post("/t/notes", json={"title": 5}), 422, "validation_error")
