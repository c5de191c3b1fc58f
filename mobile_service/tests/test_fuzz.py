"""Schemathesis fuzzing of mobile_service's OpenAPI schema (docs/api.md §4): for every operation, generated
valid and invalid requests (and ones without the token) never get a 500, every error carries
``{detail, code, request_id}``, and answers conform to the schema the service publishes.

Requests go to an in-process app from ``build_app`` with the root conftest's settings (real Redis,
real SQLite or PostgreSQL) and a real access token; its upstream services point at a closed port,
so the AI actions answer the 503 of docs/api.md §4 (they are tested end to end elsewhere). The schema is read
at import from an app built the same way and bound to a forwarding ASGI app that the module fixture
points at the real one (``tests/fuzz_support.py``). Examples are few and derandomized.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.auths import set_on_case
from schemathesis.python.asgi import get_client, shutdown_lifespans

from common.config import load_settings
from common.processes import free_port
from mobile_service.app.config import MobileSettings
from mobile_service.main import build_app
from mobile_service.tests.fuzz_rules import exempt_checks
from tests.auth import bearer as auth_header
from tests.fuzz_support import assert_error_shape, fuzz_schema, fuzz_settings

# Only its schema is read: development settings, whatever the environment says.
schema, served, FixtureToken = fuzz_schema(
    build_app(load_settings(MobileSettings, "mobile_service", env="development"), configure_logging=False).openapi()
)


@pytest.fixture(scope="module")
def mobile_app(mobile_settings: Callable[..., MobileSettings]) -> Iterator[None]:
    dead = f"http://127.0.0.1:{free_port()}"
    settings_ = mobile_settings(user_service_url=dead, llm_service_url=dead, image_service_url=dead)
    served.target = build_app(settings_, configure_logging=False)
    yield
    shutdown_lifespans()  # schemathesis keeps the app's lifespan (Redis, database) open until stopped
    served.target = None


@pytest.fixture
def bearer(issue_token: Callable[..., str]) -> Iterator[str]:
    FixtureToken.current = issue_token()
    yield FixtureToken.current
    FixtureToken.current = None


@pytest.fixture
def own_record(mobile_app: None, bearer: str) -> dict[str, Any]:
    """A published record of the caller: valid cases aim at it instead of a random, absent id."""
    auth = auth_header(bearer)
    with get_client(served) as client:
        created = client.post("/api/v1/records", json={"title": "fuzz", "content": "fuzz me"}, headers=auth)
        assert created.status_code == 201, created.text
        record = created.json()
        published = client.post(f"/api/v1/records/{record['id']}/publish", headers=auth)
        assert published.status_code == 200, published.text
    return published.json()


@schema.parametrize()
@fuzz_settings
def test_every_operation_keeps_the_error_contract_and_its_schema(
    case: schemathesis.Case, mobile_app: None, own_record: dict[str, Any]
) -> None:
    set_on_case(case, schemathesis.AuthContext(operation=case.operation, app=served), None)
    if case.meta is not None and case.meta.generation.mode.is_positive:
        if "record_id" in (case.path_parameters or {}):
            case.path_parameters["record_id"] = own_record["id"]
        if "slug" in (case.path_parameters or {}):
            case.path_parameters["slug"] = own_record["slug"]
    response = case.call()
    case.validate_response(response, excluded_checks=exempt_checks(response), transport_kwargs={"app": served})
    assert_error_shape(response)


# ---------------------------------------------------------------- regressions found by the fuzzing


def test_pinned_must_be_a_json_boolean(mobile_client: Any, auth_headers: Callable[[str], dict[str, str]]) -> None:
    me = auth_headers(str(uuid.uuid4()))
    refused = mobile_client.post("/api/v1/records", json={"title": "x", "pinned": 0}, headers=me)
    assert refused.status_code == 422 and refused.json()["code"] == "validation_error"
    created = mobile_client.post("/api/v1/records", json={"title": "x", "pinned": True}, headers=me)
    assert created.status_code == 201 and created.json()["pinned"] is True
    patched = mobile_client.patch(f"/api/v1/records/{created.json()['id']}", json={"pinned": "no"}, headers=me)
    assert patched.status_code == 422


def test_the_schema_documents_the_error_answers_of_each_route() -> None:
    paths = schema.raw_schema["paths"]
    assert {"401", "404", "409"} <= set(paths["/api/v1/records/{record_id}"]["patch"]["responses"])
    assert {"401", "409", "413"} <= set(paths["/api/v1/records"]["post"]["responses"])
    assert {"404", "502", "504"} <= set(paths["/api/v1/records/{record_id}/ai/{task}"]["post"]["responses"])
    assert "503" in paths["/ready"]["get"]["responses"]
    version = schema.raw_schema["components"]["schemas"]["RecordUpdate"]["properties"]["version"]
    assert version["anyOf"][0]["maximum"] == 2**53 - 1  # exact in every JSON parser
