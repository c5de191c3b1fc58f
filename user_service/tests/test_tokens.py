"""Token lifecycle: rotation, reuse detection, logout, and "revoked before" on password change,
deactivation and role change."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from common.models.user import User
from user_service.tests.conftest import PASSWORD, AuthActions, assert_error

USER_FIELDS = {"id", "username", "email", "display_name", "role", "is_active", "created_at", "updated_at"}


def _refresh(client: TestClient, refresh_token: str):
    return client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


def test_refresh_rotates_the_pair_and_revokes_the_old_refresh_token(client: TestClient, auth: AuthActions) -> None:
    _, first = auth.new_user()
    rotated = _refresh(client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["token_type"] == "bearer" and second["refresh_token"] != first["refresh_token"]
    assert auth.me(second).status_code == 200
    third = _refresh(client, second["refresh_token"])
    assert third.status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(client: TestClient, auth: AuthActions) -> None:
    _, first = auth.new_user()
    second = _refresh(client, first["refresh_token"]).json()

    reuse = _refresh(client, first["refresh_token"])
    assert_error(reuse, 401, "invalid_token")
    assert reuse.headers["www-authenticate"] == 'Bearer error="invalid_token"'

    # Everything issued so far is now dead: the attacker's and the victim's tokens alike.
    assert_error(auth.me(second), 401, "invalid_token")
    assert_error(auth.me(first), 401, "invalid_token")
    assert_error(_refresh(client, second["refresh_token"]), 401, "invalid_token")


def test_logout_revokes_access_and_refresh_tokens(client: TestClient, auth: AuthActions) -> None:
    _, tokens = auth.new_user()
    other_session = auth.login(auth.me(tokens).json()["username"])
    out = client.post(
        "/api/v1/auth/logout", headers=auth.headers(tokens), json={"refresh_token": tokens["refresh_token"]}
    )
    assert out.status_code == 204 and out.content == b""
    assert_error(auth.me(tokens), 401, "invalid_token")
    # Logout ends this session only; another device stays signed in.
    assert auth.me(other_session).status_code == 200


def test_reusing_a_logged_out_refresh_token_revokes_every_token_of_the_user(
    client: TestClient, auth: AuthActions
) -> None:
    # docs/api.md §5: "Reusing a revoked refresh token revokes all of that user's tokens" — a logged-out
    # one included, not only a rotated one.
    user, tokens = auth.new_user()
    other_session = auth.login(user["username"])
    out = client.post(
        "/api/v1/auth/logout", headers=auth.headers(tokens), json={"refresh_token": tokens["refresh_token"]}
    )
    assert out.status_code == 204
    assert auth.me(other_session).status_code == 200

    reuse = _refresh(client, tokens["refresh_token"])
    assert_error(reuse, 401, "invalid_token")
    assert_error(auth.me(other_session), 401, "invalid_token")
    assert_error(_refresh(client, other_session["refresh_token"]), 401, "invalid_token")
    # Signing in again works.
    assert auth.me(auth.login(user["username"])).status_code == 200


def test_an_old_refresh_token_after_a_password_change_does_not_sign_out_the_new_session(
    client: TestClient, auth: AuthActions
) -> None:
    # A token already covered by the password change has no live family left: a stale device
    # refreshing with it gets a 401 and the session made after the change survives.
    user, old = auth.new_user()
    changed = client.post(
        "/api/v1/users/me/password",
        headers=auth.headers(old),
        json={"old_password": PASSWORD, "new_password": "a brand new password"},
    )
    assert changed.status_code == 204
    fresh = auth.login(user["username"], "a brand new password")
    assert_error(_refresh(client, old["refresh_token"]), 401, "invalid_token")
    assert_error(_refresh(client, old["refresh_token"]), 401, "invalid_token")
    assert auth.me(fresh).status_code == 200
    assert _refresh(client, fresh["refresh_token"]).status_code == 200


def test_logout_without_a_body_revokes_the_access_token(client: TestClient, auth: AuthActions) -> None:
    _, tokens = auth.new_user()
    assert client.post("/api/v1/auth/logout", headers=auth.headers(tokens)).status_code == 204
    assert_error(auth.me(tokens), 401, "invalid_token")


def test_logout_cannot_revoke_another_users_refresh_token(client: TestClient, auth: AuthActions) -> None:
    _, mine = auth.new_user()
    _, theirs = auth.new_user()
    out = client.post(
        "/api/v1/auth/logout", headers=auth.headers(mine), json={"refresh_token": theirs["refresh_token"]}
    )
    assert out.status_code == 204
    assert _refresh(client, theirs["refresh_token"]).status_code == 200


def test_password_change_revokes_earlier_tokens(client: TestClient, auth: AuthActions) -> None:
    user, tokens = auth.new_user()
    other_device = auth.login(user["username"])
    changed = client.post(
        "/api/v1/users/me/password",
        headers=auth.headers(tokens),
        json={"old_password": PASSWORD, "new_password": "a brand new password"},
    )
    assert changed.status_code == 204
    for old in (tokens, other_device):
        assert_error(auth.me(old), 401, "invalid_token")
        assert_error(_refresh(client, old["refresh_token"]), 401, "invalid_token")
    bad_login = client.post("/api/v1/auth/login", json={"username": user["username"], "password": PASSWORD})
    assert_error(bad_login, 401)
    fresh = auth.login(user["username"], "a brand new password")
    assert auth.me(fresh).status_code == 200


def test_password_change_with_a_wrong_old_password_is_refused(client: TestClient, auth: AuthActions) -> None:
    _, tokens = auth.new_user()
    changed = client.post(
        "/api/v1/users/me/password",
        headers=auth.headers(tokens),
        json={"old_password": "not my password", "new_password": "a brand new password"},
    )
    body = assert_error(changed, 400, "bad_request")
    assert "old password" in body["detail"]
    assert auth.me(tokens).status_code == 200


def test_admin_deactivation_revokes_tokens_and_blocks_login(client: TestClient, auth: AuthActions) -> None:
    user, tokens = auth.new_user()
    admin = auth.admin()
    off = client.patch(f"/api/v1/users/{user['id']}", headers=auth.headers(admin), json={"is_active": False})
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert_error(auth.me(tokens), 401, "invalid_token")
    assert_error(_refresh(client, tokens["refresh_token"]), 401, "invalid_token")
    # The right password gets the same answer as a wrong one: nothing confirms the password.
    login = client.post("/api/v1/auth/login", json={"username": user["username"], "password": PASSWORD})
    refused = assert_error(login, 401, "not_authenticated")
    wrong = client.post("/api/v1/auth/login", json={"username": user["username"], "password": "not the password"})
    assert (refused["detail"], refused["code"]) == (assert_error(wrong, 401)["detail"], "not_authenticated")
    assert login.headers["www-authenticate"] == wrong.headers["www-authenticate"] == "Bearer"

    on = client.patch(f"/api/v1/users/{user['id']}", headers=auth.headers(admin), json={"is_active": True})
    assert on.status_code == 200 and on.json()["is_active"] is True
    assert auth.me(auth.login(user["username"])).status_code == 200


def test_role_change_revokes_tokens_that_carry_the_old_role(client: TestClient, auth: AuthActions) -> None:
    user, tokens = auth.new_user()
    admin = auth.admin()
    promoted = client.patch(f"/api/v1/users/{user['id']}", headers=auth.headers(admin), json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert_error(auth.me(tokens), 401, "invalid_token")
    new_tokens = auth.login(user["username"])
    assert client.get("/api/v1/users", headers=auth.headers(new_tokens)).status_code == 200


def test_me_refuses_an_account_deactivated_or_removed_behind_its_back(client: TestClient, auth: AuthActions) -> None:
    # Deactivation through the API also revokes the tokens; an operator's SQL (or a restore)
    # does not: /users/me still checks the account itself on every read.
    user, tokens = auth.new_user()
    other, other_tokens = auth.new_user()
    assert set(auth.me(tokens).json()) == USER_FIELDS

    async def change_rows() -> None:
        async with client.app_state["db"].session() as session:
            await session.execute(update(User).where(User.id == user["id"]).values(is_active=False))
            await session.execute(delete(User).where(User.id == other["id"]))
            await session.commit()

    client.portal.call(change_rows)
    assert_error(auth.me(tokens), 401, "invalid_token")
    assert_error(auth.me(other_tokens), 401, "invalid_token")
