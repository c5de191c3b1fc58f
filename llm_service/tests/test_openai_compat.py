"""The OpenAI-compatible pass-through on the wire and through the official SDK (also in tests/test_e2e_llm.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from common.config import Settings, load_settings
from common.security import encode_token
from llm_service.tests.conftest import parse_sse
from tests.fixtures.settings import TEST_SECRET

MESSAGES = [{"role": "user", "content": "Hello there"}]


def test_completion_passes_the_providers_answer_through(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    response = client.post("/v1/chat/completions", json={"messages": MESSAGES, "temperature": 0.2}, headers=me)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
    assert "Hello there" in body["choices"][0]["message"]["content"]
    assert client.get("/api/v1/usage", headers=me).json()["totals"]["requests"] == 1


def test_stream_drops_the_usage_chunk_unless_asked(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    for include_usage in (False, True):
        body = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": include_usage}}
        with client.stream("POST", "/v1/chat/completions", json=body, headers=me) as response:
            assert response.status_code == 200
            events = parse_sse(response.read().decode())
        assert events[-1] == ("message", "[DONE]")
        chunks = [data for _, data in events[:-1]]
        assert any(c["choices"] and c["choices"][0]["delta"].get("content") for c in chunks)
        usage_chunks = [c for c in chunks if c.get("usage")]
        assert bool(usage_chunks) is include_usage
    # Both streams were accounted, with the provider's counts.
    report = client.get("/api/v1/usage", headers=me).json()
    assert report["totals"]["requests"] == 2 and report["totals"]["completion_tokens"] > 0


def openai_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """OpenAI's error body (docs/api.md §7): ``{"error": {message, type, param, code}}`` only."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == code and body["error"]["message"], body
    assert response.headers["x-request-id"]
    return body["error"]


def test_bad_bodies_and_failures_answer_openais_error_body(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    for body in ([], {"messages": []}, {"messages": ["hi"]}, {"messages": MESSAGES, "model": ""}):
        error = openai_error(client.post("/v1/chat/completions", json=body, headers=me), 400, "bad_request")
        assert error["type"] == "invalid_request_error", body
    missing = openai_error(client.post("/v1/chat/completions", json={"messages": MESSAGES}), 401, "not_authenticated")
    assert missing["type"] == "authentication_error"
    failed = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "[[fail:500]]"}]}, headers=me
    )
    assert openai_error(failed, 502, "upstream_error")["type"] == "server_error"
    cut = {"messages": [{"role": "user", "content": "one two three four five [[cut]]"}], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=cut, headers=me) as response:
        events = parse_sse(response.read().decode())
    error = events[-1][1]["error"]
    assert error["code"] == "upstream_error" and error["type"] == "server_error" and error["message"]


def test_errors_outside_the_routes_answer_openais_body_too(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    openai_error(client.get("/v1/no-such-thing", headers=me), 404, "not_found")
    openai_error(client.get("/v1/chat/completions", headers=me), 405, "method_not_allowed")
    too_big = json.dumps({"messages": [{"role": "user", "content": "x" * 1_100_000}]})
    large = client.post("/v1/chat/completions", content=too_big, headers={**me, "Content-Type": "application/json"})
    openai_error(large, 413, "payload_too_large")
    plain = client.post(
        "/v1/chat/completions", content=json.dumps({"messages": MESSAGES}), headers={**me, "Content-Type": "text/plain"}
    )
    assert "application/json" in openai_error(plain, 415, "unsupported_media_type")["message"]
    # Our own /api/v1 routes keep docs/api.md §4's shape.
    ours = client.post("/api/v1/text/summarize", content=b"text", headers={**me, "Content-Type": "text/plain"})
    assert ours.status_code == 415 and set(ours.json()) == {"detail", "code", "request_id"}


def test_the_openai_sdk_shows_the_gateways_error_messages(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    token = auth_headers()["Authorization"].split()[1]
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key=token, http_client=client, max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="canned-chat", messages=[])
    assert str(bad.value) == "Error code: 400 - 'messages' must be a non-empty list of message objects"
    assert bad.value.code == "bad_request" and bad.value.type == "invalid_request_error"
    expired, _ = encode_token(load_settings(Settings, secret_key=TEST_SECRET), "u", "user", "access", now=0)
    stale = openai.OpenAI(base_url="http://testserver/v1", api_key=expired, http_client=client, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        stale.models.list()
    assert refused.value.code == "token_expired" and "The access token expired" in str(refused.value)
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(model="canned-chat", messages=[{"role": "user", "content": "[[fail:500]]"}])
    assert failed.value.code == "upstream_error" and str(failed.value) != "Error code: 502"
    cut = [{"role": "user", "content": "one two three four five [[cut]]"}]
    with pytest.raises(openai.APIError) as broken:
        for _chunk in sdk.chat.completions.create(model="canned-chat", messages=cut, stream=True):
            pass
    assert broken.value.code == "upstream_error" and broken.value.message


def test_a_lone_surrogate_is_a_bad_request_not_a_server_error(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    for body in (
        {"messages": [{"role": "user", "content": "\ud800"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a\udfffb"}]}]},
        {"messages": MESSAGES, "user": "\ud83d"},
    ):
        # json.dumps escapes the surrogate as "\\ud800", as a client's JSON encoder would send it.
        raw = json.dumps(body).encode()
        response = client.post("/v1/chat/completions", content=raw, headers={**me, "Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert "surrogate" in response.text
    # Nothing reached the provider, and the next good call works.
    assert client.post("/v1/chat/completions", json={"messages": MESSAGES}, headers=me).status_code == 200
    assert client.get("/api/v1/usage", headers=me).json()["totals"]["requests"] == 1


def test_models_outside_the_allow_list_are_refused(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(llm_allowed_models="canned-chat")) as strict:
        refused = strict.post("/v1/chat/completions", json={"messages": MESSAGES, "model": "gpt-4o"}, headers=me)
        assert refused.status_code == 400 and "canned-chat" in refused.json()["error"]["message"]
        ok = strict.post("/v1/chat/completions", json={"messages": MESSAGES, "model": "canned-chat"}, headers=me)
        assert ok.status_code == 200 and ok.json()["model"] == "canned-chat"
        assert strict.post("/v1/chat/completions", json={"messages": MESSAGES}, headers=me).status_code == 200
        session = strict.post("/api/v1/chat/sessions", json={"model": "expensive-model"}, headers=me)
        assert session.status_code == 400 and session.json()["code"] == "bad_request"
