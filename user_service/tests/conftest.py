from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from user_service.app.config import UserSettings
from user_service.main import build_app


class AuthActions:
    """Short, readable account steps for tests."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def register(self, username: str, password: str = "correct horse battery", **extra: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/auth/register", json={"username": username, "password": password, **extra})
        assert response.status_code == 201, response.text
        return response.json()

    def login(self, username: str, password: str = "correct horse battery") -> dict[str, Any]:
        response = self.client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return response.json()

    def headers(self, tokens: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture(scope="module")
def user_app_factory(make_settings: Callable[..., Any]) -> Callable[..., Any]:
    def _build(**overrides: Any) -> Any:
        return build_app(make_settings(UserSettings, "user_service", **overrides), configure_logging=False)

    return _build


@pytest.fixture(scope="module")
def client(user_app_factory: Callable[..., Any]) -> Iterator[TestClient]:
    with TestClient(user_app_factory(admin_username="root_admin", admin_password="admin-password-123")) as c:
        yield c


@pytest.fixture
def auth(client: TestClient) -> AuthActions:
    return AuthActions(client)
