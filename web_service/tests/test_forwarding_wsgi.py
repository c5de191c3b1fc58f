"""The WSGI face of the forwarding proxy, served the real way (web_service under gunicorn) in
front of a real stub upstream process: streaming both ways, header rules, SPEC error bodies."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.config import REPO_ROOT
from common.processes import free_port, popen_child, stop_process
from web_service.tests.conftest import csrf_from

TEST_SECRET = "test-secret-key-for-the-test-run-only-0123456789abcdef"
UPLOAD_BYTES = 4 * 1024 * 1024
CHUNK = 64 * 1024


def wait_healthy(url: str, proc: Any) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    port = free_port()
    proc = popen_child([sys.executable, "-m", "mobile_service.tests.forward_upstream", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        stop_process(proc, grace=3.0)


@pytest.fixture(scope="module")
def web(stub: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = dict(
        os.environ,
        WEB_SERVICE_PORT=str(port),
        WEB_THREADS="8",
        REDIS_URL=redis_url,
        SECRET_KEY=TEST_SECRET,
        LOG_DIR=str(tmp_path_factory.mktemp("web-logs")),
        UPSTREAM_TIMEOUT_SECONDS="1.5",
        FORWARD_LLM_TIMEOUT_SECONDS="2.5",
        USER_SERVICE_URL=stub,
        LLM_SERVICE_URL=stub,
        IMAGE_SERVICE_URL=stub,
        MOBILE_SERVICE_URL=f"http://127.0.0.1:{free_port()}",  # nothing there
    )
    proc = popen_child([sys.executable, str(REPO_ROOT / "web_service" / "main.py")], env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        stop_process(proc, grace=5.0)


@pytest.fixture
def browser(web: str) -> Iterator[httpx.Client]:
    """A cookie-keeping client with an (anonymous) session and its CSRF token in the header."""
    with httpx.Client(base_url=web, timeout=10.0) as client:
        token = csrf_from(client.get("/login").text)
        client.headers["X-CSRF-Token"] = token
        yield client


def test_sse_events_arrive_one_by_one_through_gunicorn(browser: httpx.Client, stub: str) -> None:
    events: list[dict[str, Any]] = []
    with browser.stream("GET", "/api/v1/chat/stream", headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) <= 2:
                    # The upstream sends the next event only when told to: a buffering proxy would
                    # never deliver this event before the command, and the test would hang.
                    httpx.post(f"{stub}/control/next", timeout=5.0)
    assert events == [{"index": 0}, {"index": 1}, {"index": 2}, {}]


def test_large_upload_streams_upstream_as_it_arrives(browser: httpx.Client, stub: str) -> None:
    payload = os.urandom(UPLOAD_BYTES)
    seen_upstream_while_sending: list[int] = []

    def body() -> Iterator[bytes]:
        for start in range(0, UPLOAD_BYTES, CHUNK):
            if start >= UPLOAD_BYTES - 2 * CHUNK and not seen_upstream_while_sending:
                got = 0
                with httpx.Client(timeout=5.0) as probe:
                    for _ in range(200):
                        got = probe.get(f"{stub}/control/received").json()["received"]
                        if got >= UPLOAD_BYTES // 2:
                            break
                        threading.Event().wait(0.05)
                seen_upstream_while_sending.append(got)
            yield payload[start : start + CHUNK]

    response = browser.post(
        "/api/v1/images/upload",
        content=body(),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(UPLOAD_BYTES)},
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"size": UPLOAD_BYTES, "sha256": hashlib.sha256(payload).hexdigest()}
    assert seen_upstream_while_sending[0] >= UPLOAD_BYTES // 2


def test_browser_headers_stay_home_and_identity_passes(browser: httpx.Client) -> None:
    response = browser.post(
        "/api/v1/models/echo?a=1&b=%2F",
        content=b"hello",
        headers={
            "Authorization": "Bearer smuggled",
            "X-Request-ID": "trace-web-1",
            "Connection": "keep-alive, X-Client-Hop",
            "X-Client-Hop": "secret",
            "X-Custom": "kept",
            "X-Forwarded-For": "192.0.2.66",  # forged by the browser: not passed on
        },
    )
    assert response.status_code == 200, response.text
    echo = response.json()
    received = echo["headers"]
    assert echo["query"] == "a=1&b=%2F" and echo["body_size"] == 5
    assert "authorization" not in received  # no session token, and a page's own header is dropped
    assert "cookie" not in received and "x-csrf-token" not in received
    assert received["x-request-id"] == ["trace-web-1"]
    assert received["x-forwarded-for"] == ["127.0.0.1"]
    assert received["x-custom"] == ["kept"]
    assert "x-client-hop" not in received
    assert response.headers.get_list("set-cookie")[-2:] == ["a=1; Path=/", "b=2; Path=/"]
    assert "x-upstream-hop" not in response.headers and "keep-alive" not in response.headers
    assert response.headers["x-request-id"] == "trace-web-1"


def test_slow_upstream_is_504_and_absent_upstream_is_503(browser: httpx.Client) -> None:
    # Model routes may stay silent for FORWARD_LLM_TIMEOUT_SECONDS (2.5 s here), not the 1.5 s of others.
    patient = browser.get("/api/v1/text/slow?seconds=2")
    assert patient.status_code == 200
    slow = browser.get("/api/v1/text/slow?seconds=5", headers={"X-Request-ID": "trace-slow"})
    assert slow.status_code == 504
    assert slow.json()["code"] == "upstream_timeout" and slow.json()["request_id"] == "trace-slow"
    down = browser.get("/api/v1/records")
    assert down.status_code == 503 and "mobile_service" in down.json()["detail"]


def test_body_over_the_forwarding_limit_is_413(browser: httpx.Client) -> None:
    too_big = 12 * 1024 * 1024 + 1
    response = browser.post(
        "/api/v1/images/upload",
        content=b"x" * too_big,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
