"""ServiceClient against a tiny real server: headers passed on, 503 when down, 504 when slow."""

from __future__ import annotations

import json

import pytest

from common.api_clients import ServiceClient
from common.errors import ServiceUnavailable, UpstreamError, UpstreamTimeout
from common.logging_setup import request_id_var
from common.processes import free_port


async def test_request_id_and_bearer_token_are_passed_on(tiny_upstream: str) -> None:
    client = ServiceClient("user_service", tiny_upstream)
    token = request_id_var.set("req-42")
    try:
        response = await client.request("POST", "/echo", token="tok123", json={"a": 1}, params={"q": "x"})
    finally:
        request_id_var.reset(token)
        await client.aclose()
    echoed = response.json()
    assert echoed["headers"]["x-request-id"] == "req-42"
    assert echoed["headers"]["authorization"] == "Bearer tok123"
    assert json.loads(echoed["body"]) == {"a": 1} and echoed["query"] == {"q": "x"}
    assert echoed["headers"]["content-type"] == "application/json"


async def test_no_token_means_no_authorization_header(tiny_upstream: str) -> None:
    client = ServiceClient("user_service", tiny_upstream)
    try:
        echoed = await client.json_or_raise("GET", "/echo")
    finally:
        await client.aclose()
    assert "authorization" not in echoed["headers"]


async def test_a_down_upstream_is_503_naming_the_service_and_the_key() -> None:
    client = ServiceClient("llm_service", f"http://127.0.0.1:{free_port()}", connect_timeout=1.0)
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            await client.request("GET", "/health")
    finally:
        await client.aclose()
    assert caught.value.status_code == 503 and caught.value.code == "service_unavailable"
    assert "llm_service" in str(caught.value.detail) and "LLM_SERVICE_URL" in str(caught.value.detail)


async def test_a_slow_upstream_is_504(tiny_upstream: str) -> None:
    client = ServiceClient("user_service", tiny_upstream, timeout=0.3)
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            await client.request("GET", "/slow")
    finally:
        await client.aclose()
    assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"


async def test_a_per_call_timeout_overrides_the_default(tiny_upstream: str) -> None:
    client = ServiceClient("user_service", tiny_upstream, timeout=30)
    try:
        with pytest.raises(UpstreamTimeout):
            await client.request("GET", "/slow", timeout=0.3)
    finally:
        await client.aclose()


async def test_an_upstream_5xx_is_502_for_json_callers(tiny_upstream: str) -> None:
    client = ServiceClient("user_service", tiny_upstream)
    try:
        with pytest.raises(UpstreamError) as caught:
            await client.json_or_raise("GET", "/fail")
        await client.health()  # a healthy /health raises nothing
    finally:
        await client.aclose()
    assert caught.value.status_code == 502


async def test_query_values_are_sent_as_text_and_none_is_dropped(tiny_upstream: str) -> None:
    client = ServiceClient("user_service", tiny_upstream)
    try:
        echoed = await client.json_or_raise("GET", "/echo", params={"apply": True, "n": 3, "skip": None})
    finally:
        await client.aclose()
    assert echoed["query"] == {"apply": "true", "n": "3"}


async def test_gzip_answers_decode_like_any_httpx_response(tiny_upstream: str) -> None:
    client = ServiceClient("user_service", tiny_upstream)
    try:
        response = await client.request("GET", "/big", headers={"Accept-Encoding": "gzip"})
    finally:
        await client.aclose()
    assert response.headers["content-encoding"] == "gzip"
    assert response.json() == {"items": list(range(2000))}


async def test_the_client_is_reusable_after_close(tiny_upstream: str) -> None:
    client = ServiceClient("user_service", tiny_upstream)
    await client.health()
    await client.aclose()
    await client.health()
    await client.aclose()
