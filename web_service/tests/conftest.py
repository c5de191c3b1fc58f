from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.processes import free_port
from mobile_service.app.config import MobileSettings
from mobile_service.main import build_app as build_mobile_app
from user_service.app.config import UserSettings
from user_service.main import build_app as build_user_app
from web_service.app.config import WebSettings
from web_service.app.setup import close_web_resources
from web_service.main import build_app
from web_service.tests.live_services import ServedApp

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"
LOGIN_MAX_FAILURES = 2


def csrf_from(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "the form carries no csrf_token field"
    return match.group(1)


@pytest.fixture(scope="module")
def web_app_factory(make_settings: Callable[..., Any]) -> Callable[..., Flask]:
    """A web app whose upstream services are closed ports (nothing answers there)."""

    def _build(**overrides: Any) -> Flask:
        closed = {f"{name}_url": f"http://127.0.0.1:{free_port()}" for name in ("user", "mobile", "llm", "image")}
        values = {f"{k[:-4]}_service_url": v for k, v in closed.items()}
        app = build_app(make_settings(WebSettings, "web_service", **{**values, **overrides}), configure_logging=False)
        app.testing = True
        return app

    return _build


@pytest.fixture(scope="module")
def web_app(web_app_factory: Callable[..., Flask]) -> Flask:
    return web_app_factory()


@pytest.fixture
def client(web_app: Flask) -> FlaskClient:
    return web_app.test_client()


# ---------------------------------------------------------------- in front of the real services


@pytest.fixture(scope="module")
def services(make_settings: Callable[..., Any]) -> Iterator[dict[str, str]]:
    """user_service and mobile_service answering on loopback (started one after the other: both
    create the tables of the shared test database)."""
    user_settings = make_settings(UserSettings, "user_service", login_max_failures=LOGIN_MAX_FAILURES)
    with ServedApp(build_user_app(user_settings, configure_logging=False)) as users:
        mobile_settings = make_settings(MobileSettings, "mobile_service", user_service_url=users.url)
        with ServedApp(build_mobile_app(mobile_settings, configure_logging=False)) as mobile:
            yield {"user_service": users.url, "mobile_service": mobile.url}


@pytest.fixture(scope="module")
def web_factory(make_settings: Callable[..., Any], services: dict[str, str]) -> Iterator[Callable[..., Flask]]:
    built: list[Flask] = []

    def _build(**overrides: Any) -> Flask:
        urls = {f"{name}_url": url for name, url in services.items()}
        app = build_app(make_settings(WebSettings, "web_service", **{**urls, **overrides}), configure_logging=False)
        app.testing = True
        built.append(app)
        return app

    yield _build
    for app in built:
        close_web_resources(app)


def new_account(services: dict[str, str]) -> str:
    username = "web_" + uuid.uuid4().hex[:10]
    response = httpx.post(
        f"{services['user_service']}/api/v1/auth/register", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    return username


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD, csrf: str | None = None) -> Any:
    token = csrf or csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})
