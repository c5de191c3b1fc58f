"""Schemathesis plumbing shared by the services' fuzz tests (``*/tests/test_fuzz.py``).

Schemathesis' fixture-based loader does not run on the pinned pytest 9, so each test module reads
its schema at import from an app built like the real one (no lifespan started) and binds it to a
``ForwardingApp`` that the module fixture later points at the real, started app.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from starlette.types import ASGIApp, Receive, Scope, Send

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "25"))

# Few examples, derandomized: the run is fast and repeatable (FUZZ_EXAMPLES=200 for a deeper one).
fuzz_settings = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class ForwardingApp:
    """The ASGI app schemathesis calls: forwards to the app the module fixture built."""

    def __init__(self) -> None:
        self.target: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.target is not None, "the module fixture has not built the app yet"
        await self.target(scope, receive, send)


class ForwardingWsgiApp:
    """The WSGI twin of ``ForwardingApp`` (web_service's Flask app)."""

    def __init__(self) -> None:
        self.target: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.target is not None, "the module fixture has not built the app yet"
        return self.target(environ, start_response)


class FixtureToken:
    """Schemathesis' auth provider: the real access token a fixture minted (``current``). Set on
    every case except those that drop or spoil the token on purpose (negative auth tests); the
    coverage phase's cases are made at collection, before any fixture, so tests set it again."""

    current: str | None = None

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str | None:
        return type(self).current

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def fuzz_schema(openapi: dict[str, Any]) -> tuple[Any, ForwardingApp, type[FixtureToken]]:
    """A schema bound to a fresh ``ForwardingApp``, with a token provider class of its own."""
    served = ForwardingApp()
    schema = schemathesis.openapi.from_dict(openapi)
    schema.app = served
    token = type("ModuleFixtureToken", (FixtureToken,), {"current": None})
    schema.auth(refresh_interval=None)(token)
    return schema, served, token


def assert_error_shape(response: schemathesis.Response) -> None:
    """docs/api.md §4: every error answers ``{detail, code, request_id}`` with the request id echoed."""
    if response.status_code < 400:
        return
    body = response.json()
    assert isinstance(body, dict), body
    if body.keys() == {"status", "checks"} and body["status"] == "degraded":
        return  # /ready's own shape (docs/api.md §11), documented for its 503
    assert {"detail", "code", "request_id"} <= body.keys(), body
    assert isinstance(body["code"], str) and body["code"], body
    assert body["request_id"] == response.headers.get("x-request-id", [None])[0], (body, response.headers)
