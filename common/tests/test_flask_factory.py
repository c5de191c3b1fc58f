"""The Flask twin of the app factory: the same error shape on JSON paths, request ids, the
access-log line, /health, /ready and /metrics."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, g, request

from common.config import Settings
from common.errors import NotFound
from common.flask_factory import create_flask_app
from common.processes import free_port

SERVICE = f"flask_test_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def build(make_settings: Callable[..., Any]) -> Callable[..., Flask]:
    def _build(**overrides: Any) -> Flask:
        settings = make_settings(Settings, "common", service_name=SERVICE, **overrides)
        app = create_flask_app(settings, import_name=__name__, configure_logging=False)

        @app.get("/api/v1/boom")
        def boom() -> None:
            raise RuntimeError("secret internals")

        @app.get("/api/v1/missing")
        def missing() -> None:
            raise NotFound("No such record")

        @app.get("/api/v1/me")
        def me() -> dict[str, str]:
            g.user_id = "user-7"
            return {"ok": "yes"}

        @app.post("/api/v1/echo")
        def echo() -> dict[str, int]:
            return {"size": len(request.get_data())}

        return app

    return _build


@pytest.fixture(scope="module")
def app(build: Callable[..., Flask]) -> Flask:
    return build()


def assert_shape(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.get_json()
    assert set(body) >= {"detail", "code", "request_id"} and body["code"] == code
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_api_errors_use_the_spec_shape(app: Flask) -> None:
    client = app.test_client()
    assert_shape(client.get("/api/v1/nothing"), 404, "not_found")
    assert_shape(client.delete("/api/v1/me"), 405, "method_not_allowed")
    assert_shape(client.get("/api/v1/missing"), 404, "not_found")
    boom = client.get("/api/v1/boom")
    assert_shape(boom, 500, "internal_error")
    assert "secret internals" not in boom.text


def test_oversized_bodies_are_413_when_read(build: Callable[..., Flask]) -> None:
    client = build(max_body_bytes=100).test_client()
    assert_shape(client.post("/api/v1/echo", data=b"x" * 1000), 413, "payload_too_large")
    assert client.post("/api/v1/echo", data=b"x" * 100).get_json() == {"size": 100}


def test_pages_get_an_html_error_page(app: Flask) -> None:
    page = app.test_client().get("/no-such-page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert page.headers["X-Request-ID"] in page.text


def test_request_id_is_accepted_or_made(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/health", headers={"X-Request-ID": "flask-1"}).headers["X-Request-ID"] == "flask-1"
    assert len(client.get("/health").headers["X-Request-ID"]) == 32


def test_one_access_log_line_per_request(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="access"):
        client.get("/api/v1/me")
        client.get("/api/v1/nothing")
    fields = [r.fields for r in caplog.records if r.name == "access"]  # type: ignore[attr-defined]
    assert [(f["method"], f["path"], f["status"], f["user_id"]) for f in fields] == [
        ("GET", "/api/v1/me", 200, "user-7"),
        ("GET", "/api/v1/nothing", 404, "-"),
    ]


def test_health_ready_metrics(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/health").get_json() == {"status": "ok", "service": SERVICE, "version": "0.1.0"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.get_json() == {"status": "ok", "checks": {"redis": "ok"}}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and f'service="{SERVICE}"' in metrics.text


def test_ready_is_degraded_when_redis_is_down(build: Callable[..., Flask]) -> None:
    client = build(redis_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.get_json()["status"] == "degraded"
    assert client.get("/health").status_code == 200
