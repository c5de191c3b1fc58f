"""web_service in-process (Flask test client) in front of the real user_service and mobile_service
(uvicorn on free loopback ports, real Redis and SQLite): signing in again, token refresh with the
latest pair, the browser's address for the login limit, and the public page's own address."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.auth import bearer
from web_service.app import auth
from web_service.app.config import WebSettings
from web_service.app.sessions import SessionStore
from web_service.app.user_api import TokenPair
from web_service.tests.conftest import (
    LOGIN_MAX_FAILURES,
    PASSWORD,
    csrf_from,
    new_account,
    sign_in,
)


@pytest.fixture(scope="module")
def web_app(web_factory: Callable[..., Flask]) -> Flask:
    return web_factory()


def session_of(app: Flask, client: FlaskClient) -> Any:
    cookie = client.get_cookie("sra_session")
    assert cookie is not None, "no session cookie"
    session = app.extensions["web_sessions"].load(cookie.value)
    assert session is not None and session.signed_in
    return session


def user_service_me(services: dict[str, str], access_token: str) -> httpx.Response:
    return httpx.get(f"{services['user_service']}/api/v1/users/me", headers=bearer(access_token))


def test_signing_in_again_revokes_the_previous_sessions_tokens(web_app: Flask, services: dict[str, str]) -> None:
    client = web_app.test_client()
    first_user, second_user = new_account(services), new_account(services)
    assert sign_in(client, first_user).status_code == 303
    old = session_of(web_app, client)
    assert user_service_me(services, old.access_token).status_code == 200

    # Signed in as the first user, the same browser signs in as the second one.
    response = sign_in(client, second_user, csrf=old.csrf_token)
    assert response.status_code == 303
    new = session_of(web_app, client)
    assert new.id != old.id and new.username == second_user
    assert client.get("/api/v1/users/me").get_json()["username"] == second_user

    assert web_app.extensions["web_sessions"].load(old.id) is None
    assert user_service_me(services, old.access_token).status_code == 401
    refresh = httpx.post(f"{services['user_service']}/api/v1/auth/refresh", json={"refresh_token": old.refresh_token})
    assert refresh.status_code == 401
    assert client.get("/api/v1/users/me").status_code == 200  # the new session is untouched


def test_refresh_uses_the_latest_stored_refresh_token(web_app: Flask, services: dict[str, str]) -> None:
    client = web_app.test_client()
    assert sign_in(client, new_account(services)).status_code == 303
    store: SessionStore = web_app.extensions["web_sessions"]
    stale = session_of(web_app, client)  # what a slow request read at its start

    # Meanwhile another request of the session rotated the pair; the stored access token is due.
    rotated = httpx.post(f"{services['user_service']}/api/v1/auth/refresh", json={"refresh_token": stale.refresh_token})
    assert rotated.status_code == 200, rotated.text
    latest = store.load(stale.id)
    pair = rotated.json()
    store.store_tokens(latest, TokenPair(pair["access_token"], pair["refresh_token"], pair["expires_in"]))
    latest.access_expires_at = 0.0
    store.save(latest)
    stale.access_expires_at = 0.0

    with web_app.test_request_context("/api/v1/users/me"):
        token = auth.fresh_access_token(stale)
    # Refreshing with the stale (already rotated) token would be taken for a leak and revoke all.
    assert token not in (pair["access_token"], latest.access_token)
    assert user_service_me(services, token).status_code == 200
    assert client.get("/api/v1/users/me").status_code == 200


def failed_logins_until_limited(client: FlaskClient, username: str, **request_kwargs: Any) -> list[int]:
    token = csrf_from(client.get("/login", **request_kwargs).get_data(as_text=True))
    statuses = []
    for _ in range(LOGIN_MAX_FAILURES + 1):
        response = client.post(
            "/login", data={"username": username, "password": "wrong password", "csrf_token": token}, **request_kwargs
        )
        statuses.append(response.status_code)
    return statuses


def test_login_limit_counts_the_browsers_address_not_web_services(web_app: Flask, services: dict[str, str]) -> None:
    username = new_account(services)
    attacker = web_app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    assert failed_logins_until_limited(attacker, username) == [401] * LOGIN_MAX_FAILURES + [429]

    # Without trusted proxies a forged X-Forwarded-For does not make a new client.
    forged = web_app.test_client()
    forged.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    token = csrf_from(forged.get("/login").get_data(as_text=True))
    again = forged.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        headers={"X-Forwarded-For": "192.0.2.1"},
    )
    assert again.status_code == 429

    # The owner, from another address, still signs in.
    owner = web_app.test_client()
    owner.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    assert sign_in(owner, username).status_code == 303


def test_behind_a_trusted_proxy_the_forwarded_client_counts(
    web_factory: Callable[..., Flask], services: dict[str, str]
) -> None:
    app = web_factory(trusted_proxy_count=1)
    username = new_account(services)
    attacker = app.test_client()  # every request comes from the proxy, 127.0.0.1
    limited = failed_logins_until_limited(attacker, username, headers={"X-Forwarded-For": "203.0.113.50"})
    assert limited == [401] * LOGIN_MAX_FAILURES + [429]

    owner = app.test_client()
    token = csrf_from(owner.get("/login", headers={"X-Forwarded-For": "203.0.113.51"}).get_data(as_text=True))
    response = owner.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        headers={"X-Forwarded-For": "203.0.113.51"},
    )
    assert response.status_code == 303


def published_slug(services: dict[str, str], username: str) -> str:
    tokens = httpx.post(
        f"{services['user_service']}/api/v1/auth/login", json={"username": username, "password": PASSWORD}
    ).json()
    headers = bearer(tokens["access_token"])
    mobile = services["mobile_service"]
    record = httpx.post(f"{mobile}/api/v1/records", json={"title": "Shared", "content": "Hello"}, headers=headers)
    assert record.status_code == 201, record.text
    published = httpx.post(f"{mobile}/api/v1/records/{record.json()['id']}/publish", headers=headers)
    assert published.status_code == 200, published.text
    return str(published.json()["slug"])


def test_public_page_links_use_the_configured_address_not_the_host_header(
    web_factory: Callable[..., Flask], web_app: Flask, services: dict[str, str]
) -> None:
    slug = published_slug(services, new_account(services))
    configured = web_factory(public_base_url="https://notes.example.org/")
    page = configured.test_client().get(f"/p/{slug}", headers={"Host": "evil.example"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'href="https://notes.example.org/p/{slug}"' in html
    assert f'content="https://notes.example.org/p/{slug}"' in html
    assert "evil.example" not in html

    # Unset: a Host on the configured list is used, any other Host gets the list's first entry.
    listed = web_factory(public_hosts="notes.internal:8000, localhost:8000").test_client()
    html = listed.get(f"/p/{slug}", headers={"Host": "localhost:8000"}).get_data(as_text=True)
    assert f'href="http://localhost:8000/p/{slug}"' in html
    html = listed.get(f"/p/{slug}", headers={"Host": "evil.example"}).get_data(as_text=True)
    assert f'href="http://notes.internal:8000/p/{slug}"' in html and "evil.example" not in html
    # Nothing configured at all: the loopback addresses on PORT.
    port = web_app.extensions["settings"].port
    html = web_app.test_client().get(f"/p/{slug}", headers={"Host": "evil.example"}).get_data(as_text=True)
    assert f'href="http://127.0.0.1:{port}/p/{slug}"' in html and "evil.example" not in html


def test_public_base_url_must_be_an_http_address(make_settings: Callable[..., Any]) -> None:
    for bad in ("notes.example.org", "javascript:alert(1)", "https://notes.example.org/?x=1"):
        with pytest.raises(ValueError, match="PUBLIC_BASE_URL"):
            make_settings(WebSettings, "web_service", public_base_url=bad)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/../../../metrics",
        "/api/v1/records/../../../openapi.json",
        "/api/v1/users/%2e%2e/%2e%2e/%2e%2e/metrics",
        "/api/v1/users/./me",
    ],
)
def test_dot_segments_are_never_forwarded_from_the_browser(web_app: Flask, services: dict[str, str], path: str) -> None:
    client = web_app.test_client()
    sign_in(client, new_account(services))
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("lang", "bad_name", "taken"),
    [
        ("zh-CN", "用户名格式不正确", "该用户名或邮箱已被使用。"),
        ("en", "Username", "This username or email is already taken."),
    ],
)
def test_the_sign_up_page_tells_its_errors_in_the_pages_language(
    web_app: Flask, services: dict[str, str], lang: str, bad_name: str, taken: str
) -> None:
    client = web_app.test_client()
    client.set_cookie("lang", lang)
    token = csrf_from(client.get("/register").get_data(as_text=True))
    refused = client.post("/register", data={"username": "no spaces!", "password": PASSWORD, "csrf_token": token})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422 and bad_name in page
    assert "String should match pattern" not in page  # never pydantic's own sentence
    existing = new_account(services)
    again = client.post("/register", data={"username": existing, "password": PASSWORD, "csrf_token": token})
    assert again.status_code == 409 and taken in again.get_data(as_text=True)
