"""Accounts for end-to-end tests: a new user registered and logged in at user_service, and the
check that its token works at another service until logout."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.auth import bearer
from tests.fixtures.launcher import Suite

PASSWORD = "correct horse battery"
# The other service that must accept user_service's token and see its revocation at once.
OTHER_SERVICE, OTHER_PATH = "mobile_service", "/api/v1/records"


def register_and_login(user_url: str) -> dict[str, Any]:
    username = f"e2e_{uuid.uuid4().hex[:10]}"
    created = httpx.post(f"{user_url}/api/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert created.status_code == 201, created.text
    login = httpx.post(f"{user_url}/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return login.json()


def assert_logout_revokes_the_token_at_mobile_service(suite: Suite) -> None:
    """Register and log in at user_service; the token works at mobile_service until logout."""
    tokens = register_and_login(suite.url("user_service"))
    me = bearer(tokens["access_token"])
    records = f"{suite.url(OTHER_SERVICE)}{OTHER_PATH}"

    before = httpx.get(records, headers=me)
    assert before.status_code == 200, before.text

    logout = httpx.post(f"{suite.url('user_service')}/api/v1/auth/logout", headers=me)
    assert logout.status_code == 204, logout.text

    after = httpx.get(records, headers=me)
    assert after.status_code == 401, after.text
    body = after.json()
    assert body["code"] == "invalid_token" and body["request_id"]
    assert after.headers["www-authenticate"].lower().startswith("bearer")
