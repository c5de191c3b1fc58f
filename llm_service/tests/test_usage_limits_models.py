"""Usage accounting, the per-user rate limit, the model list and an unconfigured provider."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from common.processes import free_port
from llm_service.tests.conftest import parse_sse


def test_usage_counts_every_call_streamed_included(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    assert client.get("/api/v1/usage", headers=me).json()["totals"]["requests"] == 0
    sid = client.post("/api/v1/chat/sessions", json={}, headers=me).json()["id"]
    plain = client.post(f"/api/v1/chat/sessions/{sid}/messages", json={"content": "hello"}, headers=me).json()
    with client.stream(
        "POST", f"/api/v1/chat/sessions/{sid}/messages", json={"content": "again", "stream": True}, headers=me
    ) as response:
        done = parse_sse(response.read().decode())[-1][1]
    assert client.post("/api/v1/text/tags", json={"text": "apples and pears"}, headers=me).status_code == 200

    report = client.get("/api/v1/usage", headers=me).json()
    assert report["totals"]["requests"] == 3
    expected_chat = plain["usage"]["total_tokens"] + done["usage"]["total_tokens"]
    assert report["totals"]["total_tokens"] > expected_chat
    [row] = report["by_day"]
    assert row["model"] == "gpt-4o-mini" and row["requests"] == 3
    assert row["day"] == datetime.now(UTC).strftime("%Y-%m-%d")

    # Somebody else sees only their own (empty) usage.
    assert client.get("/api/v1/usage", headers=auth_headers()).json()["totals"]["total_tokens"] == 0
    assert client.get("/api/v1/usage?days=0", headers=me).status_code == 422


def test_rate_limit_answers_429_with_retry_after(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(llm_rate_limit_per_minute=2)) as limited:
        for _ in range(2):
            assert limited.post("/api/v1/text/title", json={"text": "a note"}, headers=me).status_code == 200
        blocked = limited.post("/api/v1/text/title", json={"text": "a note"}, headers=me)
        assert blocked.status_code == 429 and blocked.json()["code"] == "rate_limited"
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        # The limit is per user.
        assert limited.post("/api/v1/text/title", json={"text": "a note"}, headers=auth_headers()).status_code == 200


def test_models_come_from_the_provider(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    me = auth_headers()
    models = client.get("/api/v1/models", headers=me).json()
    assert {"canned-chat", "canned-image"} <= {m["id"] for m in models["data"]}
    assert models["default_model"] == "gpt-4o-mini"
    assert client.get("/v1/models", headers=me).json()["object"] == "list"
    assert client.get("/api/v1/models").status_code == 401


def test_the_default_model_is_listed_even_when_the_provider_does_not_list_it(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory()) as default, TestClient(llm_app_factory(llm_model="canned-chat")) as listed:
        models = default.get("/api/v1/models", headers=me).json()
        ids = [m["id"] for m in models["data"]]
        # The canned upstream lists canned-chat, canned-image and canned-embedding, not gpt-4o-mini.
        assert models["default_model"] == "gpt-4o-mini" and ids[0] == "gpt-4o-mini" and ids.count("gpt-4o-mini") == 1
        assert {"canned-chat", "canned-image"} <= set(ids)
        # A model the provider lists already is not listed twice.
        again = [m["id"] for m in listed.get("/api/v1/models", headers=me).json()["data"]]
        assert again.count("canned-chat") == 1 and "gpt-4o-mini" not in again


def test_unconfigured_provider_answers_503_naming_the_keys(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(llm_api_key=None, llm_base_url=None)) as bare:
        for response in (
            bare.post("/api/v1/text/summarize", json={"text": "note"}, headers=me),
            bare.get("/api/v1/models", headers=me),
        ):
            assert response.status_code == 503 and "LLM_API_KEY" in response.json()["detail"]
        sid = bare.post("/api/v1/chat/sessions", json={}, headers=me).json()["id"]
        failed = bare.post(f"/api/v1/chat/sessions/{sid}/messages", json={"content": "hi"}, headers=me)
        assert failed.status_code == 503
        assert bare.get(f"/api/v1/chat/sessions/{sid}", headers=me).json()["messages"][0]["content"] == "hi"
        ready = bare.get("/ready").json()
        assert ready["status"] == "degraded" and "LLM_API_KEY" in ready["checks"]["llm_provider"]


def test_provider_down_is_502_and_the_service_stays_up(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(llm_base_url=f"http://127.0.0.1:{free_port()}/v1")) as dead:
        response = dead.post("/api/v1/text/title", json={"text": "note"}, headers=me)
        assert response.status_code == 502 and response.json()["code"] == "upstream_error"
        assert dead.get("/health").status_code == 200


def test_ready_with_redis_down_blames_redis_not_the_provider(llm_app_factory: Callable[..., Any]) -> None:
    # The models cache lives in Redis; the provider check must not fail because of that.
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(llm_app_factory(redis_url=dead_redis, models_cache_seconds=60)) as no_redis:
        ready = no_redis.get("/ready")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["redis"] != "ok"
        assert checks["llm_provider"] == "ok"
