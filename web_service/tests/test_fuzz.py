"""Schemathesis fuzzing of web_service's same-origin JSON API behind a signed-in browser session
(docs/api.md §4, §10): the records, sync and public routes, with mobile_service's published schema, sent
to web_service (in-process Flask) with the session cookie and its CSRF token, and forwarded with
the session's bearer token to the real mobile_service and user_service (uvicorn on loopback, real
Redis and SQLite or PostgreSQL). No answer is a 500, every error carries ``{detail, code,
request_id}`` and answers conform to the schema. Examples are few and derandomized.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from schemathesis.auths import set_on_case

from common.config import load_settings
from mobile_service.app.config import MobileSettings
from mobile_service.main import build_app as build_mobile_app
from mobile_service.tests.fuzz_rules import exempt_checks
from tests.fuzz_support import ForwardingWsgiApp, assert_error_shape, fuzz_settings
from web_service.tests.conftest import new_account, sign_in

BOOT = re.compile(r'<script type="application/json" id="boot">(.*?)</script>', re.S)

# The browser's API is mobile_service's (forwarded as it is): its records, sync and public routes.
_mobile = build_mobile_app(load_settings(MobileSettings, "mobile_service", env="development"), configure_logging=False)
_openapi = _mobile.openapi()
_openapi["paths"] = {path: ops for path, ops in _openapi["paths"].items() if path.startswith("/api/v1/")}


def as_browser_api(document: dict[str, Any]) -> dict[str, Any]:
    """The same routes as the browser sees them: authenticated by the session cookie instead of a
    bearer token, and refusing an unsafe method without the session's CSRF token (403)."""
    forbidden = {
        "description": "Missing or wrong CSRF token, or another site's Origin (forbidden)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    document["components"]["securitySchemes"] = {"session": {"type": "apiKey", "in": "cookie", "name": "sra_session"}}
    for operations in document["paths"].values():
        for method, operation in operations.items():
            if operation.get("security"):
                operation["security"] = [{"session": []}]
            if method in ("post", "put", "patch", "delete"):
                operation["responses"]["403"] = forbidden
    return document


schema = schemathesis.openapi.from_dict(as_browser_api(_openapi))
served = ForwardingWsgiApp()  # the cases are sent in-process to the Flask app the fixture builds
schema.app = served


class BrowserSession:
    """Schemathesis' auth provider: the signed-in browser's cookie and CSRF token (``current``)."""

    current: tuple[str, str] | None = None

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> tuple[str, str] | None:
        return type(self).current

    def set(self, case: schemathesis.Case, data: tuple[str, str], context: schemathesis.AuthContext) -> None:
        cookie, csrf = data
        case.cookies = {**(case.cookies or {}), "sra_session": cookie}
        case.headers = {**(case.headers or {}), "X-CSRF-Token": csrf}
        case.headers.pop("Authorization", None)  # the browser never holds a token


schema.auth(refresh_interval=None)(BrowserSession)


@pytest.fixture(scope="module")
def web(web_factory: Callable[..., Flask]) -> Iterator[Flask]:
    app = web_factory()
    served.target = app
    yield app
    served.target = None


@pytest.fixture
def browser(web: Flask, services: dict[str, str]) -> Iterator[tuple[str, str]]:
    client = web.test_client()
    assert sign_in(client, new_account(services)).status_code == 303
    cookie = client.get_cookie("sra_session")
    match = BOOT.search(client.get("/").get_data(as_text=True))
    assert cookie is not None and match
    BrowserSession.current = (cookie.value, json.loads(match.group(1))["csrf"])
    yield BrowserSession.current
    BrowserSession.current = None


@pytest.fixture
def own_record(web: Flask, browser: tuple[str, str]) -> dict[str, Any]:
    cookie, csrf = browser
    client = web.test_client()
    client.set_cookie("sra_session", cookie)
    created = client.post("/api/v1/records", json={"title": "fuzz", "content": "x"}, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.get_data(as_text=True)
    published = client.post(f"/api/v1/records/{created.json['id']}/publish", headers={"X-CSRF-Token": csrf})
    assert published.status_code == 200
    return published.json


@schema.parametrize()
@fuzz_settings
def test_the_session_api_keeps_the_error_contract_and_the_schema(
    case: schemathesis.Case, web: Flask, own_record: dict[str, Any]
) -> None:
    set_on_case(case, schemathesis.AuthContext(operation=case.operation, app=served), None)
    if case.meta is not None and case.meta.generation.mode.is_positive:
        if "record_id" in (case.path_parameters or {}):
            case.path_parameters["record_id"] = own_record["id"]
        if "slug" in (case.path_parameters or {}):
            case.path_parameters["slug"] = own_record["slug"]
    response = case.call()
    case.validate_response(response, excluded_checks=exempt_checks(response))
    assert_error_shape(response)


# ---------------------------------------------------------------- regressions found by the fuzzing


def test_an_undeclared_method_is_405_with_allow_in_the_spec_shape(web: Flask, browser: tuple[str, str]) -> None:
    cookie, csrf = browser
    client = web.test_client()
    client.set_cookie("sra_session", cookie)
    response = client.open("/api/v1/records", method="TRACE", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]
    assert response.json["code"] == "method_not_allowed" and response.json["request_id"]
