from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.auth import bearer
from user_service.app.config import UserSettings
from user_service.main import build_app

PASSWORD = "correct horse battery"
ADMIN_USERNAME = "root_admin"
ADMIN_PASSWORD = "admin-password-123"


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class AuthActions:
    """Short, readable account steps for tests."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def register(self, username: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/auth/register", json={"username": username, "password": password, **extra})
        assert response.status_code == 201, response.text
        return response.json()

    def login(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return response.json()

    def new_user(self, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Register a fresh user and log in: (user, tokens)."""
        user = self.register(unique_name(), **extra)
        return user, self.login(user["username"])

    def admin(self) -> dict[str, Any]:
        return self.login(ADMIN_USERNAME, ADMIN_PASSWORD)

    def headers(self, tokens: dict[str, Any] | str) -> dict[str, str]:
        token = tokens if isinstance(tokens, str) else tokens["access_token"]
        return bearer(token)

    def me(self, tokens: dict[str, Any] | str) -> Any:
        return self.client.get("/api/v1/users/me", headers=self.headers(tokens))


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """docs/api.md §4 error shape: detail, code and the request id that is also in the header."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"detail", "code", "request_id"}, body
    assert body["request_id"] and body["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture(scope="module")
def user_app_factory(make_settings: Callable[..., Any]) -> Callable[..., Any]:
    def _build(**overrides: Any) -> Any:
        return build_app(make_settings(UserSettings, "user_service", **overrides), configure_logging=False)

    return _build


@pytest.fixture(scope="module")
def client(user_app_factory: Callable[..., Any]) -> Iterator[TestClient]:
    with TestClient(user_app_factory(admin_username=ADMIN_USERNAME, admin_password=ADMIN_PASSWORD)) as c:
        yield c


@pytest.fixture
def auth(client: TestClient) -> AuthActions:
    return AuthActions(client)
