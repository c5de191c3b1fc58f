"""The suite always keeps an active admin: the last one can neither demote nor deactivate itself."""

from __future__ import annotations

from fastapi.testclient import TestClient

from user_service.tests.conftest import AuthActions, assert_error


def test_the_last_admin_is_kept(client: TestClient, auth: AuthActions) -> None:
    root = auth.admin()
    headers = auth.headers(root)
    me = auth.me(root).json()
    assert_error(client.patch(f"/api/v1/users/{me['id']}", headers=headers, json={"role": "user"}), 409, "conflict")
    assert_error(client.patch(f"/api/v1/users/{me['id']}", headers=headers, json={"is_active": False}), 409, "conflict")
    assert auth.me(root).json()["role"] == "admin"
    # With a second admin, either one may step down.
    other, _ = auth.new_user()
    promoted = client.patch(f"/api/v1/users/{other['id']}", headers=headers, json={"role": "admin"})
    assert promoted.status_code == 200, promoted.text
    demoted = client.patch(f"/api/v1/users/{other['id']}", headers=headers, json={"role": "user"})
    assert demoted.status_code == 200 and demoted.json()["role"] == "user"
