"""The WSGI face of the forwarding proxy, served the real way (web_service under gunicorn's gevent
worker) in front of a real stub upstream process: streaming both ways, header rules, documented error
bodies, and what slow clients get (read timeouts; they never hold up other users)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
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
        # Short read limits, so the slow-client tests below see them act.
        WEB_HEADER_TIMEOUT_SECONDS="2",
        WEB_READ_TIMEOUT_SECONDS="2",
        REDIS_URL=redis_url,
        SECRET_KEY=TEST_SECRET,
        LOG_DIR=str(tmp_path_factory.mktemp("web-logs")),
        FORWARD_TIMEOUT_SECONDS="1.5",
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


def _open(web: str) -> socket.socket:
    host, port = web.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=15)


def _read_until_closed(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def test_a_stalled_upload_is_408_and_the_upstream_request_is_abandoned(
    browser: httpx.Client, web: str, stub: str
) -> None:
    before = httpx.get(f"{stub}/control/abandoned", timeout=5.0).json()["abandoned"]
    cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    conn = _open(web)
    head = (
        "POST /api/v1/images/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {UPLOAD_BYTES}\r\nCookie: {cookie}\r\nX-CSRF-Token: {browser.headers['X-CSRF-Token']}\r\n\r\n"
    )
    conn.sendall(head.encode() + os.urandom(CHUNK))  # then nothing: the client stalls
    answer = _read_until_closed(conn)  # WEB_READ_TIMEOUT_SECONDS (2 s here) ends the wait
    conn.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["code"] == "request_timeout" and body["request_id"]
    abandoned = before
    for _ in range(100):
        abandoned = httpx.get(f"{stub}/control/abandoned", timeout=5.0).json()["abandoned"]
        if abandoned > before:
            break
        time.sleep(0.05)
    assert abandoned == before + 1


def test_a_request_whose_headers_never_finish_is_closed(web: str) -> None:
    conn = _open(web)
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n")
    # Past WEB_HEADER_TIMEOUT_SECONDS (2 s here) the server closes it without an answer; the
    # socket's own 15 s timeout would fail the test first if it never did.
    assert _read_until_closed(conn) == b""
    conn.close()


def test_hundreds_of_slow_clients_do_not_hold_up_a_normal_request(web: str) -> None:
    slow: list[socket.socket] = []
    try:
        for index in range(400):
            conn = _open(web)
            if index % 4 == 0:  # a slow body on a form post
                conn.sendall(
                    b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded"
                    b"\r\nContent-Length: 5000\r\n\r\nusername=a"
                )
            else:  # headers that never finish
                conn.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(conn)
        # Under the thread-per-request model of before, 64 such connections stopped every answer.
        with httpx.Client(base_url=web, timeout=5.0) as user:
            for _ in range(10):
                assert user.get("/health").json()["status"] == "ok"
            page = user.get("/login")
            assert page.status_code == 200 and "csrf_token" in page.text
    finally:
        for conn in slow:
            conn.close()
