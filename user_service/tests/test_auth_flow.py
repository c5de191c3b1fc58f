from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from user_service.tests.conftest import AuthActions


def _name() -> str:
    return f"u_{uuid.uuid4().hex[:10]}"


def test_register_login_and_read_me(client: TestClient, auth: AuthActions) -> None:
    name = _name()
    user = auth.register(name, email=f"{name}@example.com", display_name="Ann")
    assert user["username"] == name and user["role"] == "user" and "password_hash" not in user
    tokens = auth.login(name)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    me = client.get("/api/v1/users/me", headers=auth.headers(tokens))
    assert me.status_code == 200 and me.json()["id"] == user["id"]


def test_logout_revokes_the_access_token(client: TestClient, auth: AuthActions) -> None:
    name = _name()
    auth.register(name)
    tokens = auth.login(name)
    out = client.post(
        "/api/v1/auth/logout", headers=auth.headers(tokens), json={"refresh_token": tokens["refresh_token"]}
    )
    assert out.status_code == 204
    again = client.get("/api/v1/users/me", headers=auth.headers(tokens))
    assert again.status_code == 401
    assert (
        again.json()["code"] == "invalid_token" and again.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    )
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401


def test_duplicate_username_is_a_conflict_case_insensitively(client: TestClient, auth: AuthActions) -> None:
    name = _name()
    auth.register(name)
    response = client.post("/api/v1/auth/register", json={"username": name.upper(), "password": "another password"})
    assert response.status_code == 409 and response.json()["code"] == "conflict"
