"""Schemathesis fuzzing of llm_service's OpenAPI schema (SPEC §4): for every operation, generated
valid and invalid requests with a real access token never get a 500, every error carries
``{detail, code, request_id}``, and answers conform to the schema the service publishes.

Requests go to an in-process app from ``build_app`` (root-conftest settings: real Redis, real
SQLite) against the project's fake upstream (real ``openai`` SDK over HTTP). The schema itself is
read from an app built the same way at import time, with no lifespan: schemathesis' fixture-based
loader does not run on the pinned pytest 9. Examples are few and derandomized (fast, repeatable).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import shutdown_lifespans

from common.config import load_settings
from llm_service.app.config import LLMSettings
from llm_service.main import build_app

EXAMPLES_PER_OPERATION = 25


def assert_error_shape(response: schemathesis.Response) -> None:
    """SPEC §4: every error answers ``{detail, code, request_id}`` with the request id echoed."""
    if response.status_code < 400:
        return
    body = response.json()
    assert isinstance(body, dict), body
    assert {"detail", "code", "request_id"} <= body.keys(), body
    assert isinstance(body["code"], str) and body["code"], body
    assert body["request_id"] == response.headers.get("x-request-id", [None])[0], (body, response.headers)


@pytest.fixture(scope="module")
def llm_app(llm_app_factory: Callable[..., Any]) -> Iterator[Any]:
    # A per-user LLM rate limit high enough that fuzzing never trips it (429 is tested elsewhere).
    yield llm_app_factory(llm_rate_limit_per_minute=100_000)
    # Schemathesis keeps an app's lifespan (Redis, database, provider client) open until stopped.
    shutdown_lifespans()


@pytest.fixture
def bearer(issue_token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token()}"}


schema = schemathesis.openapi.from_dict(
    build_app(load_settings(LLMSettings, "llm_service"), configure_logging=False).openapi()
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_keeps_the_error_contract_and_its_schema(case: schemathesis.Case, llm_app: Any, bearer: dict[str, str]
) -> None:
    response = case.call_and_validate(headers=bearer, app=llm_app, excluded_checks=[schemathesis.checks.status_code_conformance])
    assert_error_shape(response)
