from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.processes import free_port
from web_service.app.config import WebSettings
from web_service.main import build_app

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


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
