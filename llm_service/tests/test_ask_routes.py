"""The routes of "Ask my records" in llm_service, in-process against the project's own upstream:
hostile and malformed input is refused in the documented shape before anything reaches the
provider, every route needs a valid access token, and a caller with no records gets an honest
empty answer (the end-to-end behaviour is in tests/test_e2e_ask.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.auth import bad_bearers


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"question": ""},
        {"question": "x" * 2_001},
        {"question": "ok", "limit": 0},
        {"question": "ok", "limit": 21},
        {"question": "ok", "stream": "yes"},
        {"question": "ok", "tag": "\u0000"},
        {"question": "ok", "tag": "t" * 33},
        {"question": ["a list"]},
    ],
)
def test_ask_refuses_bad_bodies_with_422(
    client: TestClient, auth_headers: Callable[..., dict[str, str]], body: dict[str, Any]
) -> None:
    me = auth_headers()
    response = client.post("/api/v1/ask", json=body, headers=me)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error" and response.json()["request_id"]
    assert client.get("/api/v1/usage", headers=me).json()["totals"]["requests"] == 0


@pytest.mark.parametrize("body", [{"query": ""}, {"query": "ok", "limit": 101}, {"query": "ok", "tag": "\u0000"}])
def test_index_search_refuses_bad_bodies_with_422(
    client: TestClient, auth_headers: Callable[..., dict[str, str]], body: dict[str, Any]
) -> None:
    response = client.post("/api/v1/index/search", json=body, headers=auth_headers())
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("record_id", ["..%2F..%2Fchat%2Fsessions", "abc%00def", "x" * 65, "a.b"])
def test_related_refuses_ids_that_are_not_ids(
    client: TestClient, auth_headers: Callable[..., dict[str, str]], record_id: str
) -> None:
    response = client.get(f"/api/v1/index/related/{record_id}", headers=auth_headers())
    assert response.status_code in (404, 422), response.text
    assert response.json()["code"] in ("not_found", "validation_error")


def test_every_route_needs_a_valid_access_token(
    client: TestClient, auth_headers: Callable[..., dict[str, str]], issue_token: Callable[..., str]
) -> None:
    token = auth_headers()["Authorization"].split()[1]
    refused = bad_bearers(token, issue_token(token_type="refresh"))
    calls = [
        ("POST", "/api/v1/ask", {"question": "anything"}),
        ("POST", "/api/v1/index/search", {"query": "anything"}),
        ("GET", "/api/v1/index/related/00000000-0000-0000-0000-000000000000", None),
        ("GET", "/api/v1/index/status", None),
    ]
    for method, path, body in calls:
        for headers in refused:
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["code"] in ("not_authenticated", "invalid_token")


def test_a_caller_without_records_gets_an_empty_index_and_no_citations(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    status = client.get("/api/v1/index/status", headers=me).json()
    assert status == {
        "records": 0,
        "indexed": 0,
        "pending": 0,
        "failed": 0,
        "model": "text-embedding-3-small",
        "dimensions": None,
    }
    answer = client.post("/api/v1/ask", json={"question": "What did I write about bees?"}, headers=me)
    assert answer.status_code == 200, answer.text
    assert answer.json()["citations"] == [] and answer.json()["answer"]
    hits = client.post("/api/v1/index/search", json={"query": "bees"}, headers=me).json()
    assert hits["data"] == [] and hits["model"] == "text-embedding-3-small"
    missing = client.get("/api/v1/index/related/00000000-0000-0000-0000-000000000000", headers=me)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_a_provider_outage_during_ask_is_a_documented_error(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    response = client.post("/api/v1/ask", json={"question": "bees [[fail:500]]"}, headers=auth_headers())
    assert response.status_code == 502, response.text
    assert response.json()["code"] == "upstream_error"
