"""The chaos suite: the launched suite under the failures production meets, each one bounded in
count and time and on loopback only. Every test asserts what a user would check afterwards (their
acknowledged writes are there, errors are the 503 of docs/api.md §4s and never 500s, the service recovers
by itself), never a timing. Run with the rest (``bash scripts/test.sh``) or alone: ``-m chaos``.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from common.processes import service_healthy
from tests.accounts import PASSWORD, register_and_login
from tests.auth import bearer
from tests.fixtures.launcher import Suite
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.sse import sse_events
from tests.waiting import wait_until
from web_service.tests.web_user import WebUser

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

# Each write loop runs this long before and after a kill: bounded load, not a soak.
LOAD_SECONDS = 1.5


def sign_up(suite: Suite) -> dict[str, str]:
    return bearer(register_and_login(suite.url("user_service"))["access_token"])


def png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, 40, 90)).save(buffer, "PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- kill -9 under write load


# Each write loop is paced and capped: bounded load, not a soak (and under the per-user caps, such
# as 200 chat sessions). The loop also ends when the test stops it.
WRITE_PAUSE_SECONDS = 0.02
DOWN_PAUSE_SECONDS = 0.1
MAX_WRITES = 150


@dataclass
class WriteLoad:
    """One thread writing at a steady pace; ``acknowledged`` holds what the service confirmed.

    ``write`` answers the new object's key on a 2xx, None on a 503, and raises ``Unexpected`` on
    anything else (collected, and failing the test: a 500 is never an acceptable answer)."""

    write: Callable[[httpx.Client, int], str | None]
    acknowledged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            index = 0
            while not self.stop.is_set() and len(self.acknowledged) < MAX_WRITES:
                index += 1
                try:
                    key = self.write(client, index)
                except httpx.HTTPError as exc:  # the service is down or restarting: not acknowledged
                    self.failures.append(type(exc).__name__)
                    time.sleep(DOWN_PAUSE_SECONDS)
                    continue
                except Unexpected as exc:
                    self.unexpected.append(str(exc))
                    key = None
                if key is not None:
                    self.acknowledged.append(key)
                time.sleep(WRITE_PAUSE_SECONDS)


class Unexpected(Exception):
    pass


def created_id(response: httpx.Response, key: str = "id") -> str | None:
    if response.status_code == 201:
        return str(response.json()[key])
    if response.status_code == 503:
        return None
    raise Unexpected(f"{response.status_code} {response.text[:200]}")


@pytest.fixture(scope="module")
def suite(launch_suite: Callable[..., Suite]) -> Suite:
    started = launch_suite()
    assert started.wait_for_output("all services started"), started.text()[-3000:]
    return started


def writers(suite: Suite, me: dict[str, str]) -> dict[str, tuple[WriteLoad, Callable[[httpx.Client, str], bool]]]:
    """Per service: a write whose 2xx means "stored", and the read that must find it afterwards."""
    users, mobile = suite.url("user_service"), suite.url("mobile_service")
    llm, images = suite.url("llm_service"), suite.url("image_service")
    run_id = uuid.uuid4().hex[:6]

    def register(client: httpx.Client, i: int) -> str | None:
        name = f"k9_{run_id}_{i}"
        response = client.post(f"{users}/api/v1/auth/register", json={"username": name, "password": PASSWORD})
        return name if created_id(response) is not None else None

    def can_log_in(client: httpx.Client, name: str) -> bool:
        response = client.post(f"{users}/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        return response.status_code == 200

    def record(client: httpx.Client, i: int) -> str | None:
        response = client.post(f"{mobile}/api/v1/records", json={"title": f"k9 {i}", "content": "x"}, headers=me)
        return created_id(response)

    def record_readable(client: httpx.Client, record_id: str) -> bool:
        return client.get(f"{mobile}/api/v1/records/{record_id}", headers=me).status_code == 200

    def chat_session(client: httpx.Client, i: int) -> str | None:
        response = client.post(f"{llm}/api/v1/chat/sessions", json={"title": f"k9 {i}", "persistent": True}, headers=me)
        return created_id(response)

    def session_readable(client: httpx.Client, session_id: str) -> bool:
        return client.get(f"{llm}/api/v1/chat/sessions/{session_id}", headers=me).status_code == 200

    def image(client: httpx.Client, i: int) -> str | None:
        files = {"file": (f"k9-{i}.png", png_bytes(i), "image/png")}
        response = client.post(f"{images}/api/v1/images", files=files, headers=me)
        return created_id(response)

    def image_readable(client: httpx.Client, image_id: str) -> bool:
        response = client.get(f"{images}/api/v1/images/{image_id}/content", headers=me)
        return response.status_code == 200 and response.content.startswith(b"\x89PNG")

    return {
        "user_service": (WriteLoad(register), can_log_in),
        "mobile_service": (WriteLoad(record), record_readable),
        "llm_service": (WriteLoad(chat_session), session_readable),
        "image_service": (WriteLoad(image), image_readable),
    }


@pytest.mark.parametrize("service", ["user_service", "mobile_service", "llm_service", "image_service"])
def test_kill_9_under_write_load_loses_no_acknowledged_write(suite: Suite, service: str) -> None:
    me = sign_up(suite)
    load, readable = writers(suite, me)[service]
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(load.acknowledged) >= 5, 30), "the write load never got going"
        time.sleep(LOAD_SECONDS)
        old_pid = suite.pid_of(service)
        os.kill(old_pid, signal.SIGKILL)  # mid-write: some requests are in flight right now

        def back() -> bool:
            try:
                return suite.pid_of(service) != old_pid and service_healthy(suite.url(service))
            except AssertionError:
                return False

        assert wait_until(back), suite.text()[-3000:]
        count_after_restart = len(load.acknowledged)
        assert wait_until(lambda: len(load.acknowledged) > count_after_restart + 3, 30), "writes did not resume"
    finally:
        load.stop.set()
        thread.join(timeout=30)
    assert load.unexpected == [], load.unexpected
    assert load.failures, "the kill interrupted nothing: the test did not test"
    with httpx.Client(timeout=10.0) as client:
        lost = [key for key in load.acknowledged if not readable(client, key)]
    assert lost == [], f"{len(lost)} of {len(load.acknowledged)} acknowledged writes are gone after kill -9"


# ---------------------------------------------------------------- LLM upstream faults through the browser entry


def test_llm_faults_reach_the_browser_as_spec_errors_and_the_chat_goes_on(suite: Suite) -> None:
    user = WebUser(suite.url("web_service")).sign_up()
    try:
        session = user.api("POST", "/api/v1/chat/sessions", json={"title": "faults", "persistent": True})
        assert session.status_code == 201, session.text
        messages = f"/api/v1/chat/sessions/{session.json()['id']}/messages"
        for marker, status, code in (("[[fail:500]]", 502, "upstream_error"), ("[[fail:429]]", 429, "rate_limited")):
            failed = user.api("POST", messages, json={"content": f"hello {marker}"})
            assert failed.status_code == status, failed.text
            assert failed.json()["code"] == code and failed.json()["request_id"]
        # A stream the provider cuts off ends with an error event, through both proxies' hops.
        with user.client.stream(
            "POST", messages, json={"content": "go [[cut]]", "stream": True}, headers={"X-CSRF-Token": user.csrf}
        ) as response:
            assert response.status_code == 200
            events = list(sse_events(response.iter_lines()))
        assert events[0][0] == "delta" and events[-1][0] == "error"
        # And the next message is answered as if nothing happened.
        ok = user.api("POST", messages, json={"content": "are you there?"})
        assert ok.status_code == 200, ok.text
    finally:
        user.close()


def test_llm_faults_through_the_openai_sdk_are_status_errors_not_500(suite: Suite) -> None:
    me = sign_up(suite)
    client = openai.OpenAI(
        base_url=f"{suite.url('llm_service')}/v1", api_key=me["Authorization"].split()[1], max_retries=0
    )
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi [[fail:500]]"}])
    assert failed.value.status_code == 502
    with pytest.raises(openai.APIError):  # the cut stream surfaces as an error, never as a clean end
        for _ in client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "hi [[cut]]"}], stream=True
        ):
            pass
    answer = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    # Embeddings: a provider failure is a status error; the next call is answered.
    with pytest.raises(openai.APIStatusError) as failed:
        client.embeddings.create(model="any", input=["a note [[fail:500]]"])
    assert failed.value.status_code == 502
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="any", input=["a note [[fail:429]]"])
    assert len(client.embeddings.create(model="any", input=["a note"]).data) == 1


# ---------------------------------------------------------------- slow clients at the browser entry


def test_slowloris_against_web_service_leaves_a_real_user_working(suite: Suite) -> None:
    host, port = "127.0.0.1", int(suite.url("web_service").rsplit(":", 1)[1])
    slow: list[socket.socket] = []
    try:
        for index in range(300):
            conn = socket.create_connection((host, port), timeout=10)
            if index % 3 == 0:
                conn.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 9000\r\n\r\nuser")
            else:
                conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
            slow.append(conn)
        user = WebUser(suite.url("web_service"))
        user.client.timeout = httpx.Timeout(10.0)
        try:
            user.sign_up()
            created = user.api("POST", "/api/v1/records", json={"title": "under siege", "content": "still here"})
            assert created.status_code == 201, created.text
            listed = user.api("GET", "/api/v1/records")
            assert created.json()["id"] in [r["id"] for r in listed.json()["data"]]
        finally:
            user.close()
    finally:
        for conn in slow:
            conn.close()


# ---------------------------------------------------------------- Redis stopped, and frozen


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH: cannot stop and freeze a Redis of the test's own")
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_suite(launch_suite: Callable[..., Suite], own_redis: RedisServer) -> Suite:
    started = launch_suite(env={"REDIS_URL": own_redis.url})
    assert started.wait_for_output("all services started"), started.text()[-3000:]
    return started


def outage_answers(suite: Suite, me: dict[str, str]) -> list[httpx.Response]:
    """What users get from each service while Redis is away (each within the client's timeout)."""
    with httpx.Client(timeout=5.0) as client:
        return [
            client.get(f"{suite.url('mobile_service')}/api/v1/records", headers=me),
            client.get(f"{suite.url('llm_service')}/api/v1/chat/sessions", headers=me),
            client.get(f"{suite.url('image_service')}/api/v1/images", headers=me),
            client.get(f"{suite.url('user_service')}/api/v1/users/me", headers=me),
            client.get(f"{suite.url('web_service')}/login"),
        ]


@pytest.mark.parametrize("failure", ["stopped", "frozen"])
def test_redis_outage_is_503_never_500_and_recovers_without_a_restart(
    redis_suite: Suite, own_redis: RedisServer, failure: str
) -> None:
    me = sign_up(redis_suite)
    pids = {name: redis_suite.pid_of(name) for name in ("user_service", "mobile_service", "web_service")}
    assert all(r.status_code == 200 for r in outage_answers(redis_suite, me))

    if failure == "stopped":
        own_redis.kill()
    else:
        own_redis.freeze()
    try:
        answers = outage_answers(redis_suite, me)
        assert [r.status_code for r in answers] == [503] * len(answers), [r.text[:200] for r in answers]
        for response in answers[:-1]:
            assert response.json()["code"] == "service_unavailable" and "Redis" in response.json()["detail"]
        with httpx.Client(timeout=5.0) as client:
            ready = client.get(f"{redis_suite.url('mobile_service')}/ready")
            assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("error")
            assert client.get(f"{redis_suite.url('mobile_service')}/health").status_code == 200
    finally:
        if failure == "stopped":
            own_redis.start()  # same port, empty data
        else:
            own_redis.thaw()

    assert wait_until(lambda: all(r.status_code == 200 for r in outage_answers(redis_suite, me)), 30)
    assert {name: redis_suite.pid_of(name) for name in pids} == pids, "a service was restarted to recover"


# ---------------------------------------------------------------- SIGTERM mid-upload and mid-stream


def test_sigterm_mid_upload_and_mid_stream_lets_them_finish(launch_suite: Callable[..., Suite]) -> None:
    suite = launch_suite()
    assert suite.wait_for_output("all services started"), suite.text()[-3000:]
    me = sign_up(suite)
    session = httpx.post(f"{suite.url('llm_service')}/api/v1/chat/sessions", json={"persistent": True}, headers=me)
    messages = f"{suite.url('mobile_service')}/api/v1/chat/sessions/{session.json()['id']}/messages"
    browser = WebUser(suite.url("web_service")).sign_up()
    web_session = browser.api("POST", "/api/v1/chat/sessions", json={"persistent": True}).json()["id"]
    outcome: dict[str, Any] = {}
    started = threading.Barrier(4)

    def browser_stream() -> None:  # the same kind of reply, through web_service (gevent worker)
        body = {"content": "and to me [[drip:0.3]]", "stream": True}
        path = f"/api/v1/chat/sessions/{web_session}/messages"
        with browser.client.stream("POST", path, json=body, headers={"X-CSRF-Token": browser.csrf}) as response:
            lines = response.iter_lines()
            first = next(lines)
            started.wait()
            outcome["browser stream"] = [e for e, _ in sse_events(iter([first, *lines]))]

    def stream() -> None:  # a reply whose chunks arrive 0.3 s apart, through mobile_service
        body = {"content": "tell me slowly [[drip:0.3]]", "stream": True}
        with httpx.stream("POST", messages, json=body, headers=me, timeout=60) as response:
            lines = response.iter_lines()
            first = next(lines)
            started.wait()
            outcome["stream"] = [e for e, _ in sse_events(iter([first, *lines]))]

    def upload() -> None:  # a body sent in pieces over about two seconds, through mobile_service
        data = png_bytes(7) + b"\0" * 200_000  # trailing bytes after IEND: still a PNG to Pillow
        boundary = "chaosboundary"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        payload = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()

        def pieces() -> Iterator[bytes]:
            step = len(payload) // 10
            for offset in range(0, len(payload), step):
                if offset == step:
                    started.wait()
                yield payload[offset : offset + step]
                time.sleep(0.2)

        response = httpx.post(
            f"{suite.url('mobile_service')}/api/v1/images",
            content=pieces(),
            headers={
                **me,
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(payload)),
            },
            timeout=60,
        )
        outcome["upload"] = response.status_code

    threads = [threading.Thread(target=f) for f in (stream, upload, browser_stream)]
    for thread in threads:
        thread.start()
    started.wait(timeout=30)
    suite.proc.send_signal(signal.SIGTERM)  # all three are mid-way now
    for thread in threads:
        thread.join(timeout=90)
    assert suite.wait_exit(60) == 0, suite.text()[-3000:]
    assert outcome.get("upload") == 201, outcome
    assert outcome.get("stream", [])[-1:] == ["done"], outcome
    assert outcome.get("browser stream", [])[-1:] == ["done"], outcome
    assert suite.leftovers() == [], "a process of the suite outlived the launcher"
    browser.close()
