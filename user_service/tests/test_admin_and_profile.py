"""Profile edits and the admin endpoints: paging through fastcrud, role checks, unknown ids."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from user_service.tests.conftest import AuthActions, assert_error, unique_name

USER_FIELDS = {"id", "username", "email", "display_name", "role", "is_active", "created_at", "updated_at"}


def test_user_json_has_exactly_the_spec_fields(client: TestClient, auth: AuthActions) -> None:
    user, tokens = auth.new_user(email=f"{unique_name()}@example.com", display_name="Ann")
    assert set(user) == USER_FIELDS
    me = auth.me(tokens).json()
    assert set(me) == USER_FIELDS and me["email"] == user["email"] and me["display_name"] == "Ann"
    uuid.UUID(me["id"])
    assert me["created_at"].endswith(("Z", "+00:00"))


def test_patch_me_changes_display_name_and_email(client: TestClient, auth: AuthActions) -> None:
    _, tokens = auth.new_user()
    email = f"{unique_name()}@example.com"
    changed = client.patch(
        "/api/v1/users/me", headers=auth.headers(tokens), json={"display_name": "  New Name ", "email": email}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] == "New Name" and changed.json()["email"] == email
    assert auth.me(tokens).json()["email"] == email


def test_patch_me_with_a_taken_email_is_a_conflict(client: TestClient, auth: AuthActions) -> None:
    email = f"{unique_name()}@example.com"
    auth.new_user(email=email)
    _, tokens = auth.new_user()
    taken = client.patch("/api/v1/users/me", headers=auth.headers(tokens), json={"email": email.upper()})
    assert_error(taken, 409, "conflict")


def test_patch_me_cannot_change_role(client: TestClient, auth: AuthActions) -> None:
    _, tokens = auth.new_user()
    response = client.patch("/api/v1/users/me", headers=auth.headers(tokens), json={"role": "admin"})
    assert_error(response, 422, "validation_error")
    assert auth.me(tokens).json()["role"] == "user"


def test_register_refuses_duplicate_email_and_reserved_names(client: TestClient, auth: AuthActions) -> None:
    email = f"{unique_name()}@example.com"
    auth.register(unique_name(), email=email)
    dup = client.post(
        "/api/v1/auth/register", json={"username": unique_name(), "password": "long enough", "email": email.upper()}
    )
    assert_error(dup, 409, "conflict")
    reserved = client.post("/api/v1/auth/register", json={"username": "Admin", "password": "long enough"})
    assert_error(reserved, 409, "conflict")


def test_admin_lists_users_with_the_fastcrud_page_shape(client: TestClient, auth: AuthActions) -> None:
    for _ in range(3):
        auth.register(unique_name())
    headers = auth.headers(auth.admin())
    first = client.get("/api/v1/users", headers=headers, params={"offset": 0, "limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert set(page) == {"data", "total_count", "has_more", "offset", "limit"}
    assert page["offset"] == 0 and page["limit"] == 2 and len(page["data"]) == 2
    assert page["total_count"] >= 4 and page["has_more"] is True
    assert all(set(u) == USER_FIELDS for u in page["data"])

    total = page["total_count"]
    last = client.get("/api/v1/users", headers=headers, params={"offset": total - 1, "limit": 100}).json()
    assert len(last["data"]) == 1 and last["has_more"] is False
    every = client.get("/api/v1/users", headers=headers, params={"limit": 100}).json()
    ids = [u["id"] for u in every["data"]]
    assert len(ids) == len(set(ids)) == min(total, 100)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"limit": 0},
        {"offset": -1},
        {"limit": "ten"},
        {"offset": 10**20},  # was a 500: OverflowError in the SQLite driver
        {"offset": 2**63},
        {"offset": 1_000_000_001},
        {"offset": "1e20"},
    ],
)
def test_admin_list_paging_bounds_are_validated(client: TestClient, auth: AuthActions, params: dict) -> None:
    response = client.get("/api/v1/users", headers=auth.headers(auth.admin()), params=params)
    assert_error(response, 422, "validation_error")


def test_admin_list_with_the_largest_offset_is_an_empty_page(client: TestClient, auth: AuthActions) -> None:
    response = client.get("/api/v1/users", headers=auth.headers(auth.admin()), params={"offset": 1_000_000_000})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["data"] == [] and page["has_more"] is False and page["total_count"] >= 1


def test_non_admins_are_forbidden_from_admin_endpoints(client: TestClient, auth: AuthActions) -> None:
    me, tokens = auth.new_user()
    victim, _ = auth.new_user()
    headers = auth.headers(tokens)
    assert_error(client.get("/api/v1/users", headers=headers), 403, "forbidden")
    assert_error(client.patch(f"/api/v1/users/{victim['id']}", headers=headers, json={"is_active": False}), 403)
    # Not even on oneself: a user cannot promote their own account.
    assert_error(client.patch(f"/api/v1/users/{me['id']}", headers=headers, json={"role": "admin"}), 403)
    assert_error(client.get("/api/v1/users"), 401, "not_authenticated")


@pytest.mark.parametrize("user_id", [str(uuid.uuid4()), "not-a-uuid", "1", "x" * 2000, "%00", "..%2F..%2Fetc"])
def test_admin_patch_of_an_unknown_user_is_404(client: TestClient, auth: AuthActions, user_id: str) -> None:
    response = client.patch(f"/api/v1/users/{user_id}", headers=auth.headers(auth.admin()), json={"role": "admin"})
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("body", [{"role": "superuser"}, {"is_active": "maybe"}, {"password_hash": "x"}, []])
def test_admin_patch_rejects_bad_fields(client: TestClient, auth: AuthActions, body: object) -> None:
    user, _ = auth.new_user()
    response = client.patch(f"/api/v1/users/{user['id']}", headers=auth.headers(auth.admin()), json=body)
    assert_error(response, 422, "validation_error")
