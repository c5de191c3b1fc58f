"""The OpenAI-compatible pass-through on the wire (the official SDK is used in tests/test_e2e_llm.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from llm_service.tests.conftest import parse_sse

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


def test_bad_bodies_and_failures_use_the_error_shape(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    for body in ([], {"messages": []}, {"messages": ["hi"]}, {"messages": MESSAGES, "model": ""}):
        response = client.post("/v1/chat/completions", json=body, headers=me)
        assert response.status_code == 400 and response.json()["code"] == "bad_request", body
    assert client.post("/v1/chat/completions", json={"messages": MESSAGES}).status_code == 401
    failed = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "[[fail:500]]"}]}, headers=me
    )
    assert failed.status_code == 502 and failed.json()["code"] == "upstream_error"
    cut = {"messages": [{"role": "user", "content": "one two three four five [[cut]]"}], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=cut, headers=me) as response:
        events = parse_sse(response.read().decode())
    assert "error" in events[-1][1] and events[-1][1]["error"]["code"] == "upstream_error"


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
        assert refused.status_code == 400 and "canned-chat" in refused.json()["detail"]
        ok = strict.post("/v1/chat/completions", json={"messages": MESSAGES, "model": "canned-chat"}, headers=me)
        assert ok.status_code == 200 and ok.json()["model"] == "canned-chat"
        assert strict.post("/v1/chat/completions", json={"messages": MESSAGES}, headers=me).status_code == 200
        session = strict.post("/api/v1/chat/sessions", json={"model": "expensive-model"}, headers=me)
        assert session.status_code == 400 and session.json()["code"] == "bad_request"
