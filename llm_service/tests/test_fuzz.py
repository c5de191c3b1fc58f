"""Schemathesis fuzzing of llm_service's OpenAPI schema (docs/api.md §4): for every operation, generated
valid and invalid requests (and ones without the token) never get a 500, every error carries
``{detail, code, request_id}`` (OpenAI's error body under ``/v1``), and answers conform to the schema the service publishes.

Requests go to an in-process app from ``build_app`` with the root conftest's settings (real Redis,
real SQLite or PostgreSQL) against the project's fake upstream (real ``openai`` SDK over HTTP),
with a real access token. Schemathesis' fixture-based loader does not run on the pinned pytest 9, so the
schema is read at import from an app built the same way (no lifespan started) and bound to a
forwarding ASGI app that the module fixture points at the real one. Examples are few and
derandomized: the run is fast and repeatable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.auths import set_on_case
from schemathesis.checks import positive_data_acceptance
from schemathesis.python.asgi import get_client, shutdown_lifespans
from starlette.testclient import TestClient

from common.config import load_settings
from llm_service.app.config import LLMSettings
from llm_service.main import build_app
from tests.fuzz_support import assert_error_shape, fuzz_schema, fuzz_settings

# Only its schema is read: development settings, whatever the environment says.
schema, served, FixtureToken = fuzz_schema(
    build_app(load_settings(LLMSettings, "llm_service", env="development"), configure_logging=False).openapi()
)


# Limits tighter than the schema, set in LLMSettings (CHAT_MAX_RECORD_IDS, CHAT_MESSAGE_MAX_CHARS, ...).
# And NUL in an id: the app factory's answer on PostgreSQL.
DOCUMENTED_LIMITS = re.compile(
    r"^(Nothing to retry: |At most \d+ record_ids per message$|\w+ is longer than \d+ characters$"
    r"|Text must not contain NUL)"
)


def error_message(response: schemathesis.Response) -> object:
    """The message of either error body: docs/api.md §4's ``detail``, or OpenAI's under ``/v1``."""
    body = response.json()
    return body["error"].get("message") if isinstance(body.get("error"), dict) else body.get("detail")


def refused_by_a_documented_limit(response: schemathesis.Response) -> bool:
    if response.status_code not in (400, 413):
        return False
    detail = error_message(response)
    return isinstance(detail, str) and DOCUMENTED_LIMITS.match(detail) is not None


def assert_the_paths_error_shape(case: schemathesis.Case, response: schemathesis.Response) -> None:
    """docs/api.md §4's shape, except OpenAI's ``{"error": {message, type, param, code}}`` under ``/v1/``."""
    if not case.path.startswith("/v1/") or response.status_code < 400:
        assert_error_shape(response)
        return
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["code"], error
    assert response.headers.get("x-request-id"), response.headers


@pytest.fixture(scope="module")
def llm_app(llm_app_factory: Callable[..., Any]) -> Iterator[None]:
    # A per-user LLM rate limit high enough that fuzzing never trips it (429 is tested elsewhere).
    served.target = llm_app_factory(llm_rate_limit_per_minute=100_000)
    yield
    # Schemathesis keeps an app's lifespan (Redis, database, provider client) open until stopped.
    shutdown_lifespans()
    served.target = None


@pytest.fixture
def bearer(issue_token: Callable[..., str]) -> Iterator[str]:
    FixtureToken.current = issue_token()
    yield FixtureToken.current
    FixtureToken.current = None


@pytest.fixture
def own_session(llm_app: None, bearer: str) -> str:
    """A chat session of the caller: valid cases aim at it instead of a random, absent id."""
    with get_client(served) as client:
        response = client.post(
            "/api/v1/chat/sessions", json={"title": "fuzz"}, headers={"Authorization": f"Bearer {bearer}"}
        )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@schema.parametrize()
@fuzz_settings
def test_every_operation_keeps_the_error_contract_and_its_schema(
    case: schemathesis.Case, llm_app: None, own_session: str
) -> None:
    set_on_case(case, schemathesis.AuthContext(operation=case.operation, app=served), None)
    if case.meta is not None and case.meta.generation.mode.is_positive and "session_id" in (case.path_parameters or {}):
        case.path_parameters["session_id"] = own_session
    response = case.call()
    # Schema-valid input may still meet a configurable limit or the session's state, answered with
    # the 400 of docs/api.md §4/413; only those documented answers skip the "valid data is accepted" check.
    exempt = [positive_data_acceptance] if refused_by_a_documented_limit(response) else []
    case.validate_response(response, excluded_checks=exempt, transport_kwargs={"app": served})
    assert_the_paths_error_shape(case, response)


# ---------------------------------------------------------------- regressions found by the fuzzing


def test_openai_body_with_a_malformed_stream_option_or_message_is_refused(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    hello = {"role": "user", "content": "Hello"}
    for body in (
        {"messages": [hello], "stream": {}},
        {"messages": [hello], "stream": "false"},
        {"messages": [{"content": "Hello"}]},
        {"messages": [{"role": "user", "content": 42}]},
        {"messages": [hello], "stream": True, "stream_options": "x"},  # was a 500
    ):
        response = client.post("/v1/chat/completions", json=body, headers=me)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == "bad_request"
    assert (
        client.post("/v1/chat/completions", json={"messages": [hello], "stream": False}, headers=me).status_code == 200
    )


def test_booleans_of_request_bodies_must_be_json_booleans(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    refused = client.post("/api/v1/chat/sessions", json={"persistent": 0}, headers=me)
    assert refused.status_code == 422 and refused.json()["code"] == "validation_error"
    created = client.post("/api/v1/chat/sessions", json={"persistent": True}, headers=me)
    assert created.status_code == 201 and created.json()["persistent"] is True
    renamed = client.patch(f"/api/v1/chat/sessions/{created.json()['id']}", json={"persistent": "no"}, headers=me)
    assert renamed.status_code == 422


def test_the_schema_documents_the_error_shape_and_the_text_tasks() -> None:
    document = schema.raw_schema
    assert set(document["components"]["schemas"]["ErrorBody"]["required"]) == {"detail", "code", "request_id"}
    text = document["paths"]["/api/v1/text/{task}"]["post"]
    assert {"401", "404", "413", "429", "502", "503", "504"} <= set(text["responses"])
    assert text["parameters"][0]["schema"]["enum"] == ["summarize", "tags", "title", "polish"]
    # The chat bounds (CHAT_MAX_*) are documented as 409 where they apply.
    assert "409" in document["paths"]["/api/v1/chat/sessions"]["post"]["responses"]
    assert "409" in document["paths"]["/api/v1/chat/sessions/{session_id}/messages"]["post"]["responses"]


def test_the_error_shape_is_the_one_of_common_errors() -> None:
    from common.errors import ErrorBody
    from llm_service.app import schemas

    assert not hasattr(schemas, "ErrorBody")  # one definition, in common/errors.py
    documented = schema.raw_schema["components"]["schemas"]["ErrorBody"]
    assert documented == ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")


def test_record_ids_with_nul_or_too_long_are_refused_by_messages_and_retries(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    session = client.post("/api/v1/chat/sessions", json={}, headers=me).json()["id"]
    for path, body in (
        (f"/api/v1/chat/sessions/{session}/messages", {"content": "hi", "record_ids": ["r\x00"]}),
        (f"/api/v1/chat/sessions/{session}/retry", {"record_ids": ["r\x00"]}),
        (f"/api/v1/chat/sessions/{session}/retry", {"record_ids": ["r" * 65]}),
    ):
        response = client.post(path, json=body, headers=me)
        assert response.status_code == 422 and response.json()["code"] == "validation_error", (path, response.text)
