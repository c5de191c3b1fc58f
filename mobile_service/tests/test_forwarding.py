"""The forwarding proxy with real processes: a real user_service, a small real upstream that counts
upload bytes and streams SSE on command, an upstream that is down and one that is too slow."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from common.forwarding_rules import forward_request_headers, forward_response_headers, upstream_for
from common.processes import free_port
from mobile_service.main import build_app
from mobile_service.tests.conftest import RunningProcess

UPLOAD_BYTES = 10 * 1024 * 1024 + 123
CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def user_service(start_process: Callable[..., RunningProcess], database_url: str, redis_url: str) -> RunningProcess:
    port = free_port()
    return start_process(
        ["user_service/main.py"],
        {"USER_SERVICE_PORT": str(port), "DATABASE_URL": database_url, "REDIS_URL": redis_url},
        port=port,
    )


@pytest.fixture(scope="module")
def mobile(
    start_process: Callable[..., RunningProcess],
    stub: RunningProcess,
    user_service: RunningProcess,
    database_url: str,
    redis_url: str,
) -> RunningProcess:
    port = free_port()
    return start_process(
        ["mobile_service/main.py"],
        {
            "MOBILE_SERVICE_PORT": str(port),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "USER_SERVICE_URL": user_service.url,
            "LLM_SERVICE_URL": stub.url,
            "IMAGE_SERVICE_URL": stub.url,
            "FORWARD_TIMEOUT_SECONDS": "1",
            "FORWARD_LLM_TIMEOUT_SECONDS": "3",
        },
        port=port,
    )


@pytest.fixture(scope="module")
def http(mobile: RunningProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mobile.url, timeout=20.0) as client:
        yield client


def test_routing_table_follows_the_spec() -> None:
    assert upstream_for("/api/v1/auth/login") == "user_service"
    assert upstream_for("/api/v1/users") == "user_service"
    assert upstream_for("/api/v1/users/me/password") == "user_service"
    assert upstream_for("/api/v1/chat/sessions/1/messages") == "llm_service"
    assert upstream_for("/api/v1/text/summarize") == "llm_service"
    assert upstream_for("/api/v1/models") == "llm_service"
    assert upstream_for("/api/v1/usage") == "llm_service"
    assert upstream_for("/api/v1/images/1/content") == "image_service"
    assert upstream_for("/api/v1/generations") == "image_service"
    assert upstream_for("/api/v1/records") is None
    assert upstream_for("/api/v1/usersx") is None
    assert upstream_for("/api/v1/sync/changes") is None


def test_header_rules_drop_hop_by_hop_and_pass_identity() -> None:
    out = dict(
        forward_request_headers(
            [
                ("Host", "mobile.example"),
                ("Connection", "keep-alive, X-Secret-Hop"),
                ("X-Secret-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("Authorization", "Bearer abc"),
                ("X-Forwarded-For", "10.0.0.1"),
                ("X-Request-ID", "client-chosen"),
            ],
            client_host="10.0.0.2",
            request_id="req-1",
        )
    )
    assert "Host" not in out and "X-Secret-Hop" not in out and "Keep-Alive" not in out
    assert "Transfer-Encoding" not in out and "Connection" not in out
    assert out["Authorization"] == "Bearer abc"
    assert out["X-Forwarded-For"] == "10.0.0.1, 10.0.0.2"
    assert out["X-Request-ID"] == "req-1"
    assert out["X-Forwarded-Host"] == "mobile.example"
    back = forward_response_headers([("Connection", "x-h"), ("X-H", "1"), ("Set-Cookie", "a"), ("Set-Cookie", "b")])
    assert back == [("Set-Cookie", "a"), ("Set-Cookie", "b")]


def test_register_login_and_me_go_to_the_real_user_service(http: httpx.Client) -> None:
    name = f"fwd_{uuid.uuid4().hex[:8]}"
    created = http.post("/api/v1/auth/register", json={"username": name, "password": "correct horse battery"})
    assert created.status_code == 201, created.text
    tokens = http.post("/api/v1/auth/login", json={"username": name, "password": "correct horse battery"}).json()
    me = http.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}", "X-Request-ID": "trace-me-1"}
    )
    assert me.status_code == 200
    assert me.json()["username"] == name
    assert me.headers["x-request-id"] == "trace-me-1"
    assert me.headers.get_list("x-request-id") == ["trace-me-1"]
    # The upstream's own errors pass through unchanged (here: no token).
    anonymous = http.get("/api/v1/users/me")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert anonymous.headers["www-authenticate"] == "Bearer"


def test_headers_are_filtered_both_ways(http: httpx.Client) -> None:
    response = http.post(
        "/api/v1/models/echo?a=1&b=%2F",
        content=b"hello",
        headers={
            "Authorization": "Bearer token-123",
            "X-Request-ID": "trace-echo-1",
            "Connection": "keep-alive, X-Client-Hop",
            "X-Client-Hop": "secret",
            "X-Custom": "kept",
        },
    )
    assert response.status_code == 200
    echo = response.json()
    received = echo["headers"]
    assert echo["query"] == "a=1&b=%2F"
    assert echo["body_size"] == 5
    assert received["authorization"] == ["Bearer token-123"]
    assert received["x-request-id"] == ["trace-echo-1"]
    assert received["x-custom"] == ["kept"]
    assert received["x-forwarded-for"] == ["127.0.0.1"]
    assert "x-client-hop" not in received
    assert "keep-alive" not in received
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.headers["x-upstream"] == "echo"
    assert "x-upstream-hop" not in response.headers
    assert "keep-alive" not in response.headers


def test_large_upload_streams_through_without_being_buffered(http: httpx.Client, stub: RunningProcess) -> None:
    payload = os.urandom(UPLOAD_BYTES)
    seen_upstream_while_sending: list[int] = []

    def body() -> Iterator[bytes]:
        for start in range(0, UPLOAD_BYTES, CHUNK):
            if start >= UPLOAD_BYTES - 2 * CHUNK and not seen_upstream_while_sending:
                # Before the last chunks leave the client, the upstream already holds most of the
                # body: the proxy passes it on as it arrives. (Waits for the bytes, never on a clock.)
                with httpx.Client(timeout=5.0) as probe:
                    for _ in range(200):
                        got = probe.get(f"{stub.url}/control/received").json()["received"]
                        if got >= UPLOAD_BYTES // 2:
                            break
                        threading.Event().wait(0.05)
                seen_upstream_while_sending.append(got)
            yield payload[start : start + CHUNK]

    response = http.post(
        "/api/v1/images/upload",
        content=body(),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(UPLOAD_BYTES)},
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"size": UPLOAD_BYTES, "sha256": hashlib.sha256(payload).hexdigest()}
    assert seen_upstream_while_sending[0] >= UPLOAD_BYTES // 2


def test_sse_events_arrive_one_by_one(http: httpx.Client, stub: RunningProcess) -> None:
    events: list[dict[str, Any]] = []
    with http.stream("GET", "/api/v1/chat/stream", headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) <= 2:
                    # The upstream sends the next event only when told to: had the proxy buffered
                    # the stream, this event would never have arrived before the command.
                    httpx.post(f"{stub.url}/control/next", timeout=5.0)
    assert events == [{"index": 0}, {"index": 1}, {"index": 2}, {}]


def test_slow_upstream_answers_504_in_the_spec_shape(http: httpx.Client) -> None:
    # A model call gets FORWARD_LLM_TIMEOUT_SECONDS (3 here), every other route FORWARD_TIMEOUT_SECONDS (1).
    response = http.get("/api/v1/text/slow?seconds=5", headers={"X-Request-ID": "trace-slow"})
    assert response.status_code == 504
    body = response.json()
    assert body["code"] == "upstream_timeout"
    assert body["request_id"] == "trace-slow"
    assert "llm_service" in body["detail"] and "3s" in body["detail"]
    short = http.get("/api/v1/images/slow?seconds=2")
    assert short.status_code == 504
    assert "image_service" in short.json()["detail"]


def test_model_calls_get_the_longer_timeout(http: httpx.Client) -> None:
    response = http.get("/api/v1/text/slow?seconds=2")
    assert response.status_code == 200
    assert response.json() == {"result": "late"}


def test_stream_read_timeout_is_the_silence_between_chunks(http: httpx.Client) -> None:
    # Five events 0.8 s apart: longer than the 3 s timeout in all, never silent for 3 s.
    with http.stream("GET", "/api/v1/chat/ticks?count=5&every=0.8") as response:
        assert response.status_code == 200
        data = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert [json.loads(line[6:]) for line in data] == [{"index": i} for i in range(5)] + [{}]


def test_client_leaving_a_stream_closes_the_upstream_connection(http: httpx.Client, stub: RunningProcess) -> None:
    before = httpx.get(f"{stub.url}/control/disconnects", timeout=5.0).json()["disconnects"]
    with http.stream("POST", "/api/v1/chat/endless", json={"content": "hi", "stream": True}) as response:
        assert response.status_code == 200
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen == 3:
                    break  # the client leaves mid-stream
    # The upstream's stream never ends by itself: it sees a disconnect only if the proxy closed
    # its connection when the client left.
    deadline = time.monotonic() + 15.0
    disconnects = before
    while time.monotonic() < deadline and disconnects == before:
        time.sleep(0.1)
        disconnects = httpx.get(f"{stub.url}/control/disconnects", timeout=5.0).json()["disconnects"]
    assert disconnects == before + 1


def test_usage_is_forwarded_to_llm_service(http: httpx.Client) -> None:
    assert http.get("/api/v1/usage").json() == {"usage": "stub"}


def test_upstream_down_answers_503_in_the_spec_shape(mobile_client: TestClient) -> None:
    response = mobile_client.post("/api/v1/auth/login", json={"username": "x", "password": "y"})
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert "user_service" in body["detail"] and "USER_SERVICE_URL" in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert mobile_client.get("/api/v1/images").status_code == 503


def test_forwarded_path_uses_the_forwarding_body_limit_not_the_records_limit(
    mobile_settings: Callable[..., Any],
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = mobile_settings(image_service_url=dead, max_body_bytes=1000, forward_max_body_bytes=4000)
    with TestClient(build_app(settings, configure_logging=False)) as client:
        # Over the records limit but under the forwarding one: it is forwarded (and the upstream is down).
        assert client.post("/api/v1/images", content=b"x" * 2000).status_code == 503
        too_big = client.post("/api/v1/images", content=b"x" * 5000)
        assert too_big.status_code == 413
        assert too_big.json()["code"] == "payload_too_large"


DOT_SEGMENT_PATHS = [
    "/api/v1/auth/../../../metrics",
    "/api/v1/images/../../../openapi.json",
    "/api/v1/auth/x/../login",
    "/api/v1/auth/%2e%2e/%2e%2e/%2e%2e/metrics",
    "/api/v1/auth/%2E%2E%2F%2E%2E%2Fmetrics",
    "/api/v1/auth/%252e%252e/me",
    "/api/v1/users/./me",
]


def raw_request(base_url: str, path: str) -> tuple[int, dict[str, Any]]:
    """Send ``path`` exactly as written (httpx would resolve the dot segments before sending): a
    POST with an empty JSON body for login paths, else a GET. Answers the status and JSON body."""
    parsed = urllib.parse.urlsplit(base_url)
    connection = HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        connection.request(
            "POST" if path.endswith("/login") else "GET",
            path,
            body=b"{}" if path.endswith("/login") else None,
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        body = json.loads(response.read() or b"{}")
        return response.status, body
    finally:
        connection.close()


@pytest.mark.parametrize("path", DOT_SEGMENT_PATHS)
def test_dot_segments_are_never_forwarded(mobile: RunningProcess, path: str) -> None:
    status, body = raw_request(mobile.url, path)
    assert status == 404, body
    assert body["code"] == "not_found"
    assert "access_token" not in body


def test_client_leaving_an_upload_midway_abandons_the_upstream_request(
    start_process: Callable[..., RunningProcess],
    stub: RunningProcess,
    user_service: RunningProcess,
    database_url: str,
    redis_url: str,
) -> None:
    # mobile_service with its default 30 s upstream timeout: the upstream may learn of the
    # abandoned upload only from the proxy dropping its connection, never from that timeout.
    port = free_port()
    proxy = start_process(
        ["mobile_service/main.py"],
        {
            "MOBILE_SERVICE_PORT": str(port),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "USER_SERVICE_URL": user_service.url,
            "IMAGE_SERVICE_URL": stub.url,
        },
        port=port,
    )
    before = httpx.get(f"{stub.url}/control/abandoned", timeout=5.0).json()["abandoned"]
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        "POST /api/v1/images/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {UPLOAD_BYTES}\r\n\r\n"
    )
    client.sendall(head.encode() + os.urandom(UPLOAD_BYTES // 4))
    received = 0
    for _ in range(200):  # the first part reached the upstream
        received = httpx.get(f"{stub.url}/control/received", timeout=5.0).json()["received"]
        if received >= UPLOAD_BYTES // 8:
            break
        time.sleep(0.05)
    assert received >= UPLOAD_BYTES // 8
    client.close()  # the client leaves three quarters short

    abandoned = before
    deadline = time.monotonic() + 10.0  # well inside the 30 s the upstream timeout would take
    while time.monotonic() < deadline and abandoned == before:
        time.sleep(0.1)
        abandoned = httpx.get(f"{stub.url}/control/abandoned", timeout=5.0).json()["abandoned"]
    assert abandoned == before + 1
    assert httpx.get(f"{proxy.url}/health", timeout=5.0).status_code == 200
