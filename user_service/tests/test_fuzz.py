"""Schemathesis fuzzing of user_service's OpenAPI schema: for every operation, generated valid and
invalid requests (with a real admin's token, fresh per case) never get a 500, and every error
carries docs/api.md §4 shape ``{detail, code, request_id}``.

The schema is read from an app built the same way at import time (no lifespan needed for that);
requests go to an in-process app with real Redis and a real SQLite file. Examples are few and
derandomized (fast, repeatable)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from schemathesis.python.asgi import shutdown_lifespans

from common.config import load_settings
from tests.fuzz_support import assert_error_shape, fuzz_settings
from user_service.app.config import UserSettings
from user_service.main import build_app
from user_service.tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME


@pytest.fixture(scope="module")
def fuzz_app(user_app_factory: Callable[..., Any]) -> Iterator[Any]:
    yield user_app_factory(
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
        login_max_failures=1_000_000,  # fuzzed logins must not trip the limit (429 is tested elsewhere)
    )
    # Schemathesis keeps an app's lifespan (Redis, database) open until stopped.
    shutdown_lifespans()


@pytest.fixture(scope="module")
def admin_id(fuzz_app: Any) -> str:
    login = schema["/api/v1/auth/login"]["POST"].Case(body={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    tokens = login.call(app=fuzz_app)
    assert tokens.status_code == 200, tokens.text
    me = schema["/api/v1/users/me"]["GET"].Case(headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    return me.call(app=fuzz_app).json()["id"]


@pytest.fixture
def bearer(issue_token: Callable[..., str], admin_id: str) -> dict[str, str]:
    # A fresh token per case: a fuzzed logout revokes only its own token.
    return {"Authorization": f"Bearer {issue_token(admin_id, role='admin')}"}


schema = schemathesis.openapi.from_dict(
    build_app(load_settings(UserSettings, "user_service"), configure_logging=False).openapi()
)
# A schema-valid request may still be refused for what it says: a wrong old password on
# POST /users/me/password is 400 bad_request (docs/api.md §4), like 401/403/404/409 for other operations.
_acceptance = schema.config.checks.positive_data_acceptance
_acceptance.expected_statuses = [*_acceptance.expected_statuses, "400"]


@schema.parametrize()
@settings(fuzz_settings, max_examples=20)
def test_no_operation_answers_500_or_breaks_the_error_shape(
    case: schemathesis.Case, fuzz_app: Any, bearer: dict[str, str]
) -> None:
    # ignored_auth re-sends requests without the app (unusable in-process); missing and bad
    # tokens are covered by test_hostile_input.py. Documented status codes are not exhaustive.
    response = case.call_and_validate(
        app=fuzz_app,
        headers=bearer,
        excluded_checks=[schemathesis.checks.status_code_conformance, schemathesis.checks.ignored_auth],
    )
    assert_error_shape(response)
