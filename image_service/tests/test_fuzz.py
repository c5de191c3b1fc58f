"""Schemathesis fuzzing of image_service's OpenAPI schema (docs/api.md §4): for every operation, generated
valid and invalid requests (and ones without the token) never get a 500, every error carries
``{detail, code, request_id}``, and answers conform to the schema the service publishes.

Requests go to an in-process app from ``build_app`` with the root conftest's settings (real Redis,
real SQLite or PostgreSQL, a temporary storage directory) and the project's fake upstream as image
provider, with a real access token. Generation workers are off: tasks stay pending, so no
background work competes with the run. Schemathesis' fixture-based loader does not run on the pinned pytest 9, so
the schema is read at import from an app built the same way (no lifespan started) and bound to a
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
from common.pagination import MAX_OFFSET
from image_service.app.config import ImageSettings
from image_service.main import build_app
from image_service.tests.conftest import png_bytes
from tests.fuzz_support import assert_error_shape, fuzz_schema, fuzz_settings

# Only its schema is read: development settings, whatever the environment says.
schema, served, FixtureToken = fuzz_schema(
    build_app(load_settings(ImageSettings, "image_service", env="development"), configure_logging=False).openapi()
)

# Answers to schema-valid input that the schema cannot express: bytes that are not an accepted
# image (judged by content), an empty file, NUL in an id (the app factory's PostgreSQL answer).
DOCUMENTED_REFUSALS = re.compile(
    r"^(The file is not a JPEG, PNG, WebP or GIF image|The image data is corrupt or truncated"
    r"|The uploaded file is empty|Text must not contain NUL)"
)


def refused_as_documented(response: schemathesis.Response) -> bool:
    if response.status_code not in (400, 415):
        return False
    detail = response.json().get("detail")
    return isinstance(detail, str) and DOCUMENTED_REFUSALS.match(detail) is not None


@pytest.fixture(scope="module")
def image_app(image_app_factory: Callable[..., Any], fake_llm_url: str) -> Iterator[None]:
    served.target = image_app_factory(
        llm_base_url=fake_llm_url, llm_api_key="test-key", generation_workers_enabled=False
    )
    yield
    # Schemathesis keeps an app's lifespan (Redis, database, storage, provider) open until stopped.
    shutdown_lifespans()
    served.target = None


@pytest.fixture
def bearer(issue_token: Callable[..., str]) -> Iterator[str]:
    FixtureToken.current = issue_token()
    yield FixtureToken.current
    FixtureToken.current = None


@pytest.fixture
def own_objects(image_app: None, bearer: str) -> dict[str, str]:
    """An image and a generation task of the caller: valid cases aim at them, not at absent ids."""
    auth = {"Authorization": f"Bearer {bearer}"}
    with get_client(served) as client:
        image = client.post("/api/v1/images", files={"file": ("a.png", png_bytes((48, 32)))}, headers=auth)
        task = client.post("/api/v1/generations", json={"prompt": "a red square", "n": 2}, headers=auth)
    assert image.status_code == 201, image.text
    assert task.status_code == 202, task.text
    return {"image_id": image.json()["id"], "task_id": task.json()["id"]}


@schema.parametrize()
@fuzz_settings
def test_every_operation_keeps_the_error_contract_and_its_schema(
    case: schemathesis.Case, own_objects: dict[str, str]
) -> None:
    set_on_case(case, schemathesis.AuthContext(operation=case.operation, app=served), None)
    if case.meta is not None and case.meta.generation.mode.is_positive:
        for name in ("image_id", "task_id"):
            if name in (case.path_parameters or {}):
                case.path_parameters[name] = own_objects[name]
    response = case.call()
    exempt = [positive_data_acceptance] if refused_as_documented(response) else []
    case.validate_response(response, excluded_checks=exempt, transport_kwargs={"app": served})
    assert_error_shape(response)


def test_the_schema_documents_the_error_shape_and_the_optional_token_of_image_bytes() -> None:
    document = schema.raw_schema
    assert set(document["components"]["schemas"]["ErrorBody"]["required"]) == {"detail", "code", "request_id"}
    assert {"400", "401", "404", "413", "415", "503"} <= set(document["paths"]["/api/v1/images"]["post"]["responses"])
    for path in ("/api/v1/images/{image_id}/content", "/api/v1/images/{image_id}/thumbnail"):
        assert document["paths"][path]["get"]["security"] == [{"HTTPBearer": []}, {}]
    assert document["paths"]["/api/v1/images/{image_id}"]["get"]["security"] == [{"HTTPBearer": []}]
    # docs/api.md §8: one status for an upload (a duplicate is a 201 with the existing image, never a 200).
    assert "200" not in document["paths"]["/api/v1/images"]["post"]["responses"]


def test_the_error_shape_is_the_one_of_common_errors() -> None:
    from common.errors import ErrorBody
    from image_service.app import schemas

    assert not hasattr(schemas, "ErrorBody")  # one definition, in common/errors.py
    documented = schema.raw_schema["components"]["schemas"]["ErrorBody"]
    assert documented == ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schema.raw_schema["paths"]["/api/v1/images/{image_id}"]["get"]["responses"]["404"]["description"] == (
        "Missing, or not the caller's (not_found)"
    )


def test_an_offset_beyond_the_database_integer_range_is_a_422_not_a_500(
    client: TestClient, issue_token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {issue_token()}"}
    for path in ("/api/v1/images", "/api/v1/generations"):
        huge = client.get(path, params={"offset": 2**63}, headers=headers)
        assert huge.status_code == 422 and huge.json()["code"] == "validation_error", huge.text
        last = client.get(path, params={"offset": MAX_OFFSET}, headers=headers)
        assert last.status_code == 200 and last.json()["data"] == [], last.text


def test_nul_characters_are_refused_the_same_on_every_database(
    client: TestClient, issue_token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {issue_token()}"}
    response = client.post("/api/v1/generations", json={"prompt": "a \x00 cat"}, headers=headers)
    assert response.status_code == 422 and response.json()["code"] == "validation_error", response.text
    upload = client.post(
        "/api/v1/images", files={"file": ("a.png", png_bytes((30, 20)))}, data={"record_id": "r\x00"}, headers=headers
    )
    assert upload.status_code == 400 and "NUL" in upload.json()["detail"], upload.text
