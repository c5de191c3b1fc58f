"""Embeddings through the gateway: ``POST /api/v1/embeddings`` and the OpenAI-compatible
``POST /v1/embeddings`` (the official SDK's ``embeddings.create``), against the project's own
upstream over HTTP: vectors in order, texts that share words near each other, usage accounted
to the caller, hostile input refused in the documented shape, provider faults as 502/429."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from tests.auth import bad_bearers, bearer


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def test_vectors_come_in_order_and_shared_words_are_near(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    texts = ["budget meeting on monday", "notes from the budget meeting", "tomatoes in the garden", "预算会议记录"]
    response = client.post("/api/v1/embeddings", json={"input": texts}, headers=me)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "text-embedding-3-small"  # LLM_EMBEDDING_MODEL's default
    assert len(body["data"]) == 4 and all(len(v) == body["dimensions"] > 0 for v in body["data"])
    budget, notes, garden, chinese = body["data"]
    assert cosine(budget, notes) > 0.3 > cosine(budget, garden)
    again = client.post("/api/v1/embeddings", json={"input": ["明天的预算会议"]}, headers=me).json()["data"][0]
    assert cosine(chinese, again) > 0.3 > cosine(chinese, garden)  # CJK text is compared by its characters
    # Deterministic: the same text, the same vector.
    assert client.post("/api/v1/embeddings", json={"input": [texts[0]]}, headers=me).json()["data"][0] == budget


def test_usage_is_recorded_per_caller(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    me, other = auth_headers(), auth_headers()
    assert client.post("/api/v1/embeddings", json={"input": ["one text", "two texts"]}, headers=me).status_code == 200
    mine = client.get("/api/v1/usage", headers=me).json()
    assert mine["totals"]["requests"] == 1 and mine["totals"]["total_tokens"] > 0
    assert client.get("/api/v1/usage", headers=other).json()["totals"]["requests"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"input": []},
        {"input": [""]},
        {"input": ["x" * 8_001]},
        {"input": ["ok"] * 65},
        {"input": "not a list"},
        {"input": [1, 2]},
    ],
)
def test_bad_input_is_422_in_the_documented_shape(
    client: TestClient, auth_headers: Callable[..., dict[str, str]], body: dict[str, Any]
) -> None:
    response = client.post("/api/v1/embeddings", json=body, headers=auth_headers())
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error" and response.json()["request_id"]


def test_a_valid_access_token_is_required(
    client: TestClient, auth_headers: Callable[..., dict[str, str]], issue_token: Callable[..., str]
) -> None:
    token = auth_headers()["Authorization"].split()[1]
    refused = bad_bearers(token, issue_token(token_type="refresh"))
    for path in ("/api/v1/embeddings", "/v1/embeddings"):
        for headers in refused:
            response = client.post(path, json={"input": ["x"]}, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
    usage = client.get("/api/v1/usage", headers=bearer(token)).json()
    assert usage["totals"]["requests"] == 0  # nothing reached the provider on the caller's account


@pytest.mark.parametrize(("marker", "status"), [("[[fail:500]]", 502), ("[[fail:429]]", 429)])
def test_provider_faults_are_spec_errors(
    client: TestClient, auth_headers: Callable[..., dict[str, str]], marker: str, status: int
) -> None:
    response = client.post("/api/v1/embeddings", json={"input": [f"hello {marker}"]}, headers=auth_headers())
    assert response.status_code == status, response.text
    assert response.json()["code"] in ("upstream_error", "rate_limited")
    assert client.post("/api/v1/embeddings", json={"input": ["hello"]}, headers=auth_headers()).status_code == 200


def test_the_official_sdk_embeds_through_the_gateway(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    token = auth_headers()["Authorization"].split()[1]
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key=token, http_client=client, max_retries=0)
    answer = sdk.embeddings.create(model="canned-embedding", input=["budget meeting", "garden tomatoes"])
    assert [item.index for item in answer.data] == [0, 1]
    assert len(answer.data[0].embedding) == 256 and answer.model == "canned-embedding"
    single = sdk.embeddings.create(model="canned-embedding", input="budget meeting")
    assert single.data[0].embedding == answer.data[0].embedding
    with pytest.raises(openai.BadRequestError):
        sdk.embeddings.create(model="canned-embedding", input=[""])


def test_the_openai_route_refuses_a_lone_surrogate_with_400(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    raw = json.dumps({"input": ["\ud800"]}).encode()
    response = client.post(
        "/v1/embeddings", content=raw, headers={**auth_headers(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
