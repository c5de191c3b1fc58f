"""Hostile input gets docs/api.md §4 error shape with the right status, never a 500."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from common.security import encode_token
from tests.auth import bearer
from user_service.tests.conftest import PASSWORD, AuthActions, assert_error, unique_name

TEN_MB = 10 * 1024 * 1024


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"a" * min(size, total - sent)
        sent += size


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username": "abc"},
        {"password": "long enough"},
        {"username": 123, "password": "long enough"},
        {"username": ["a"], "password": "long enough"},
        {"username": "ab", "password": "long enough"},
        {"username": "x" * 33, "password": "long enough"},
        {"username": "bad name!", "password": "long enough"},
        {"username": "okname", "password": "short"},
        {"username": "okname", "password": "p" * 129},
        {"username": "okname", "password": "long enough", "email": "not-an-email"},
        {"username": "okname", "password": "long enough", "role": "admin"},
        {"username": "okname", "password": None},
        [],
        "just a string",
        None,
    ],
)
def test_register_rejects_bad_bodies_with_422(client: TestClient, body: Any) -> None:
    assert_error(client.post("/api/v1/auth/register", json=body), 422, "validation_error")


def test_validation_errors_do_not_echo_the_password(client: TestClient) -> None:
    body = assert_error(
        client.post("/api/v1/auth/register", json={"username": "okname", "password": "sekrit"}), 422, "validation_error"
    )
    assert isinstance(body["detail"], list) and "sekrit" not in json.dumps(body)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{", 422),
        (b'{"username": "a", }', 422),
        (b"nul\x00l", 422),
        (b'{"username": "a"' + b" " * 1000, 422),
        (b"\xff\xfe\x00", 400),  # not text at all: FastAPI cannot decode it, a plain bad request
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh"])
def test_malformed_json_is_a_client_error(client: TestClient, path: str, raw: bytes, status: int) -> None:
    response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, status, "validation_error" if status == 422 else "bad_request")


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"username": "someone"},
        {"username": "x" * 65, "password": "whatever"},
        {"username": "someone", "password": "p" * 129},
        {"username": "someone", "password": "whatever", "grant_type": "client_credentials"},
    ],
)
def test_token_form_rejects_bad_forms_with_422(client: TestClient, form: dict[str, str]) -> None:
    assert_error(client.post("/api/v1/auth/token", data=form), 422, "validation_error")


def test_login_with_json_on_the_form_endpoint_is_422(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", json={"username": "someone", "password": "whatever"})
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"data": {"username": "someone", "password": "whatever"}},
        {"content": b"username=someone&password=whatever", "headers": {"Content-Type": "text/plain"}},
    ],
    ids=["form", "text-plain"],
)
def test_a_json_endpoint_sent_form_data_or_text_is_415_naming_application_json(
    client: TestClient, request_kwargs: dict[str, Any]
) -> None:
    for path in ("/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/refresh"):
        body = assert_error(client.post(path, **request_kwargs), 415, "unsupported_media_type")
        assert "application/json" in body["detail"] and "valid dictionary" not in body["detail"], path


def test_the_oauth2_form_endpoint_still_takes_its_form(
    client: TestClient, signed_in: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    user, _ = signed_in
    response = client.post("/api/v1/auth/token", data={"username": user["username"], "password": PASSWORD})
    assert response.status_code == 200 and response.json()["token_type"] == "bearer", response.text


def test_too_long_strings_are_counted_in_characters(client: TestClient) -> None:
    body = {"username": unique_name(), "password": "p" * 129}
    detail = assert_error(client.post("/api/v1/auth/register", json=body), 422, "validation_error")["detail"]
    assert [e["msg"] for e in detail] == ["String should have at most 128 characters"]


@pytest.mark.parametrize(
    ("method", "path", "content_type", "needs_auth"),
    [
        ("POST", "/api/v1/auth/register", "application/json", False),
        ("POST", "/api/v1/auth/login", "application/json", False),
        ("POST", "/api/v1/auth/token", "application/x-www-form-urlencoded", False),
        ("POST", "/api/v1/auth/refresh", "application/json", False),
        ("POST", "/api/v1/auth/logout", "application/json", True),
        ("PATCH", "/api/v1/users/me", "application/json", True),
        ("POST", "/api/v1/users/me/password", "application/json", True),
    ],
)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_ten_megabyte_bodies_are_413(
    client: TestClient,
    signed_in: tuple[dict[str, Any], dict[str, Any]],
    method: str,
    path: str,
    content_type: str,
    needs_auth: bool,
    chunked: bool,
) -> None:
    headers = {"Content-Type": content_type}
    if needs_auth:
        headers.update(AuthActions(client).headers(signed_in[1]))
    content: Any = _chunks(TEN_MB) if chunked else b"a" * TEN_MB
    response = client.request(method, path, content=content, headers=headers)
    if chunked:
        assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "payload_too_large")


def test_a_large_but_allowed_body_still_works(client: TestClient) -> None:
    name = unique_name()
    body = {"username": name, "password": "long enough", "display_name": "n" * 100}
    padded = json.dumps(body) + " " * 500_000  # whitespace is valid JSON padding, under the 1 MB limit
    response = client.post("/api/v1/auth/register", content=padded, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text


# ---------------------------------------------------------------- tokens


def _settings(client: TestClient) -> Any:
    return client.app_state["settings"]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def signed_in(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """One user for the whole module (each password hash costs tens of milliseconds)."""
    return AuthActions(client).new_user()


@pytest.fixture(scope="module")
def hostile_tokens(client: TestClient, signed_in: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, str]:
    settings = _settings(client)
    user, tokens = signed_in
    good = tokens["access_token"]
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    expired, _ = encode_token(settings, user["id"], "user", "access", now=time.time() - 3600)
    forged_admin = _b64({**claims, "role": "admin"})
    other = settings.model_copy(update={"secret_key": "another-secret-key-that-is-long-enough-0123456789"})
    wrong_key, _ = encode_token(other, user["id"], "user", "access")
    hs512 = settings.model_copy(update={"jwt_algorithm": "HS512"})
    wrong_alg, _ = encode_token(hs512, user["id"], "user", "access")
    return {
        "tampered payload": f"{header}.{forged_admin}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[::-1]}",
        "expired": expired,
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg none with signature": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}",
        "other secret": wrong_key,
        "other algorithm": wrong_alg,
        "refresh as access": tokens["refresh_token"],
        "garbage": "not.a.jwt",
        "one segment": "abc",
        "empty segments": "..",
        "binary": "\u00ff\u00fe",
        "huge": "a" * 5000,
        "json payload list": f"{header}.{_b64([1, 2])}.{signature}",  # type: ignore[arg-type]
    }


HOSTILE_TOKEN_NAMES = [
    "tampered payload",
    "tampered signature",
    "expired",
    "alg none",
    "alg none with signature",
    "other secret",
    "other algorithm",
    "refresh as access",
    "garbage",
    "one segment",
    "empty segments",
    "huge",
    "json payload list",
]


INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'
EXPIRED_TOKEN_CHALLENGE = 'Bearer error="invalid_token", error_description="The access token expired"'


@pytest.mark.parametrize("name", [n for n in HOSTILE_TOKEN_NAMES if n != "expired"])
def test_bad_access_tokens_are_401_invalid_token(client: TestClient, hostile_tokens: dict[str, str], name: str) -> None:
    token = hostile_tokens[name]
    response = client.get("/api/v1/users/me", headers=bearer(token))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE


def test_an_expired_access_token_is_401_token_expired(client: TestClient, hostile_tokens: dict[str, str]) -> None:
    response = client.get("/api/v1/users/me", headers=bearer(hostile_tokens["expired"]))
    body = assert_error(response, 401, "token_expired")
    assert "expired" in body["detail"]
    assert response.headers["www-authenticate"] == EXPIRED_TOKEN_CHALLENGE
    head, payload, signature = hostile_tokens["expired"].split(".")
    forged = client.get("/api/v1/users/me", headers=bearer(f"{head}.{payload}.{signature[::-1]}"))
    assert_error(forged, 401, "invalid_token")  # only a token we signed is called expired


def test_an_access_token_that_expires_after_its_first_use_is_token_expired(
    client: TestClient, signed_in: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    settings = _settings(client)
    user, _ = signed_in
    lifetime = settings.access_token_minutes * 60
    token, claims = encode_token(settings, user["id"], "user", "access", now=time.time() - lifetime + 2)
    assert client.get("/api/v1/users/me", headers=bearer(token)).status_code == 200  # verified, then cached
    time.sleep(max(0.0, claims.exp - time.time()) + 1.1)
    response = client.get("/api/v1/users/me", headers=bearer(token))
    assert_error(response, 401, "token_expired")
    assert response.headers["www-authenticate"] == EXPIRED_TOKEN_CHALLENGE


def test_an_expired_refresh_token_is_token_expired_and_names_the_refresh_token(
    client: TestClient, signed_in: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    user, _ = signed_in
    stale, _ = encode_token(_settings(client), user["id"], "user", "refresh", now=time.time() - 30 * 86400)
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": stale})
    assert_error(response, 401, "token_expired")
    assert 'error_description="The refresh token expired"' in response.headers["www-authenticate"]
    as_access = client.get("/api/v1/users/me", headers=bearer(stale))
    assert_error(as_access, 401, "invalid_token")  # the wrong kind of token, expired or not


@pytest.mark.parametrize("name", [n for n in HOSTILE_TOKEN_NAMES if n not in ("refresh as access", "huge")])
def test_bad_refresh_tokens_are_401(client: TestClient, hostile_tokens: dict[str, str], name: str) -> None:
    token = hostile_tokens[name]
    assert_error(client.post("/api/v1/auth/refresh", json={"refresh_token": token}), 401, "invalid_token")


def test_an_oversized_refresh_token_is_422(client: TestClient) -> None:
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": "a" * 5000})
    assert_error(response, 422, "validation_error")


def test_access_token_used_as_refresh_token_is_401(
    client: TestClient, auth: AuthActions, signed_in: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    _, tokens = signed_in
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert_error(response, 401, "invalid_token")
    assert auth.me(tokens).status_code == 200  # a failed misuse revokes nothing


def test_token_of_a_user_that_does_not_exist_is_401(client: TestClient, auth: AuthActions) -> None:
    token, _ = encode_token(_settings(client), "00000000-0000-0000-0000-000000000000", "user", "access")
    assert_error(auth.me(token), 401, "invalid_token")


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "bearer"],
)
def test_missing_or_malformed_authorization_is_401_not_authenticated(
    client: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/api/v1/users/me", headers=headers)
    assert_error(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


# ---------------------------------------------------------------- routing


def test_unknown_path_and_wrong_method_use_the_error_shape(client: TestClient, auth: AuthActions) -> None:
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.delete("/api/v1/users/me", headers=auth.headers(auth.admin())), 405)
    assert_error(client.get("/api/v1/auth/login"), 405)


def test_a_client_request_id_is_kept_and_a_bad_one_replaced(client: TestClient) -> None:
    kept = client.get("/api/v1/nothing-here", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123" and kept.json()["request_id"] == "abc-123"
    replaced = client.get("/api/v1/nothing-here", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert replaced.json()["request_id"] == replaced.headers["x-request-id"]
