"""Login: both forms, one answer for every failure, the failure limit, the dummy-hash path,
bcrypt → argon2 upgrade, and the first admin (from env and from the CLI)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from passlib.context import CryptContext
from sqlalchemy import select

from common import security
from common.config import REPO_ROOT
from common.models.user import User
from user_service.tests.conftest import ADMIN_USERNAME, PASSWORD, AuthActions, assert_error, unique_name


def _login(client: TestClient, username: str, password: str, headers: dict[str, str] | None = None):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password}, headers=headers)


def test_oauth2_password_form_issues_tokens(client: TestClient, auth: AuthActions) -> None:
    user = auth.register(unique_name())
    response = client.post(
        "/api/v1/auth/token", data={"username": user["username"], "password": PASSWORD, "grant_type": "password"}
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert auth.me(tokens).json()["username"] == user["username"]


def test_login_is_case_insensitive_on_the_username(client: TestClient, auth: AuthActions) -> None:
    user = auth.register(unique_name())
    assert _login(client, user["username"].upper(), PASSWORD).status_code == 200


def test_unknown_user_and_wrong_password_get_the_same_answer(client: TestClient, auth: AuthActions) -> None:
    user = auth.register(unique_name())
    wrong = assert_error(_login(client, user["username"], "not the password"), 401, "not_authenticated")
    unknown = assert_error(_login(client, unique_name("ghost"), "not the password"), 401, "not_authenticated")
    assert (wrong["detail"], wrong["code"]) == (unknown["detail"], unknown["code"])
    assert wrong["detail"] == "Incorrect username or password"


def test_unknown_user_still_costs_one_password_verification(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timing-safe login: the dummy hash is verified when the user does not exist.
    checked: list[str] = []
    real_verify = security.pwd_context.verify

    def spy(secret: str, hash: str, **kw: Any) -> bool:
        checked.append(hash)
        return real_verify(secret, hash, **kw)

    monkeypatch.setattr(security.pwd_context, "verify", spy)
    assert_error(_login(client, unique_name("ghost"), "whatever password"), 401)
    assert checked == [security.DUMMY_HASH]
    assert security.DUMMY_HASH.startswith("$argon2id$")


def test_five_failures_block_the_next_attempt_with_retry_after(client: TestClient, auth: AuthActions) -> None:
    user = auth.register(unique_name())
    for _ in range(5):
        assert_error(_login(client, user["username"], "wrong password!"), 401)
    blocked = assert_error(_login(client, user["username"], PASSWORD), 429, "rate_limited")
    assert blocked["detail"]
    retry_after = int(_login(client, user["username"], PASSWORD).headers["retry-after"])
    assert 0 < retry_after <= 900
    # The limit is per (username, client address): another account from this address still works.
    other = auth.register(unique_name())
    assert _login(client, other["username"], PASSWORD).status_code == 200


def test_the_sixth_attempt_is_refused_without_checking_the_password(
    client: TestClient, auth: AuthActions, password_checks: list[str]
) -> None:
    user = auth.register(unique_name())
    for n in range(5):
        assert_error(_login(client, user["username"], f"wrong password {n}"), 401)
    assert len(password_checks) == 5
    blocked = _login(client, user["username"], PASSWORD)
    assert_error(blocked, 429, "rate_limited")
    assert len(password_checks) == 5  # refused before any hashing
    # Retry-After is the rest of the window, and stays so (blocked attempts do not extend it).
    first_wait = int(blocked.headers["retry-after"])
    again = int(_login(client, user["username"], PASSWORD).headers["retry-after"])
    assert 0 < again <= first_wait <= 900


def test_a_successful_login_resets_the_failure_count(client: TestClient, auth: AuthActions) -> None:
    user = auth.register(unique_name())
    for _ in range(4):
        assert_error(_login(client, user["username"], "wrong password!"), 401)
    assert _login(client, user["username"], PASSWORD).status_code == 200
    for _ in range(4):
        assert_error(_login(client, user["username"], "wrong password!"), 401)
    assert _login(client, user["username"], PASSWORD).status_code == 200


def test_the_form_endpoint_shares_the_failure_limit(client: TestClient, auth: AuthActions) -> None:
    user = auth.register(unique_name())
    for _ in range(5):
        failed = client.post("/api/v1/auth/token", data={"username": user["username"], "password": "wrong password"})
        assert_error(failed, 401)
    assert_error(_login(client, user["username"], PASSWORD), 429, "rate_limited")


def test_bcrypt_hash_verifies_and_is_upgraded_to_argon2(client: TestClient, auth: AuthActions) -> None:
    user = auth.register(unique_name())
    legacy = CryptContext(schemes=["bcrypt"]).hash(PASSWORD)
    assert legacy.startswith("$2b$")

    async def set_hash(value: str) -> None:
        async with client.app_state["db"].session() as session:
            row = await session.get(User, user["id"])
            row.password_hash = value
            await session.commit()

    async def read_hash() -> str:
        async with client.app_state["db"].session() as session:
            return (await session.execute(select(User.password_hash).where(User.id == user["id"]))).scalar_one()

    client.portal.call(set_hash, legacy)  # type: ignore[union-attr]
    assert _login(client, user["username"], PASSWORD).status_code == 200
    upgraded = client.portal.call(read_hash)  # type: ignore[union-attr]
    assert upgraded.startswith("$argon2id$")
    assert _login(client, user["username"], PASSWORD).status_code == 200
    assert_error(_login(client, user["username"], "wrong password!"), 401)


def test_first_admin_comes_from_the_environment(client: TestClient, auth: AuthActions) -> None:
    me = auth.me(auth.admin()).json()
    assert me["username"] == ADMIN_USERNAME and me["role"] == "admin"


def test_invalid_first_admin_settings_are_refused_naming_the_key(make_settings: Callable[..., Any]) -> None:
    from user_service.app.config import UserSettings

    with pytest.raises(ValueError, match="ADMIN_PASSWORD"):
        make_settings(UserSettings, "user_service", admin_username="boss", admin_password="short")
    with pytest.raises(ValueError, match="ADMIN_USERNAME"):
        make_settings(UserSettings, "user_service", admin_username="no spaces allowed", admin_password="long enough!")


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "user_service.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_creates_an_admin_in_a_fresh_database(
    tmp_path: Any, user_app_factory: Callable[..., Any], redis_url: str
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    created = _cli(database_url, "create-admin", "--username", "cli_boss", "--password", "cli-password-123")
    assert created.returncode == 0, created.stderr
    assert "cli_boss" in created.stdout

    again = _cli(database_url, "create-admin", "--username", "CLI_BOSS", "--password", "cli-password-123")
    assert again.returncode == 1 and "already exists" in again.stderr

    bad = _cli(database_url, "create-admin", "--username", "x", "--password", "cli-password-123")
    assert bad.returncode == 2 and "username" in bad.stderr

    with TestClient(user_app_factory(database_url=database_url)) as other:
        tokens = AuthActions(other).login("cli_boss", "cli-password-123")
        listing = other.get("/api/v1/users", headers=AuthActions(other).headers(tokens))
        assert listing.status_code == 200
        assert [u["role"] for u in listing.json()["data"]] == ["admin"]


# ---------------------------------------------------------------- the limit under concurrency


def _concurrent_logins(client: TestClient, username: str, passwords: list[str]) -> list[int]:
    """Send the logins all at once into the app's own event loop; their status codes, in order."""

    async def with_lifespan_state(scope: Any, receive: Any, send: Any) -> None:
        # httpx's ASGI transport does not pass the lifespan's State on; TestClient holds it.
        await client.app(dict(scope, state=dict(client.app_state)), receive, send)

    async def _burst() -> list[int]:
        transport = httpx.ASGITransport(app=with_lifespan_state, client=("198.51.100.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://user-service.test") as http:
            answers = await asyncio.gather(
                *(http.post("/api/v1/auth/login", json={"username": username, "password": p}) for p in passwords)
            )
        return [a.status_code for a in answers]

    return client.portal.call(_burst)  # type: ignore[union-attr]


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password verification the app runs (a counting wrapper around the real one)."""
    checked: list[str] = []
    real_verify = security.verify_password

    def counting(password: str, password_hash: str | None) -> tuple[bool, str | None]:
        checked.append(password)
        return real_verify(password, password_hash)

    monkeypatch.setattr(security, "verify_password", counting)
    return checked


def test_parallel_wrong_passwords_get_at_most_five_password_checks(
    client: TestClient, auth: AuthActions, password_checks: list[str]
) -> None:
    user = auth.register(unique_name())
    statuses = _concurrent_logins(client, user["username"], [f"guess number {n}" for n in range(20)])
    assert len(password_checks) == 5
    assert sorted(statuses) == [401] * 5 + [429] * 15
    # From that address the right password is refused too until the window ends ...
    assert _concurrent_logins(client, user["username"], [PASSWORD]) == [429]
    # ... while the limit is per (username, client address): another address still gets in.
    assert _login(client, user["username"], PASSWORD).status_code == 200


def test_parallel_logins_of_an_unknown_user_are_limited_too(client: TestClient, password_checks: list[str]) -> None:
    statuses = _concurrent_logins(client, unique_name("ghost"), ["whatever password"] * 12)
    assert len(password_checks) == 5
    assert statuses.count(429) == 7
