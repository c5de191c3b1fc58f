"""End to end through the launcher: user_service issues the tokens, llm_service talks to the
project's canned OpenAI-protocol upstream, which the launcher starts itself (no LLM_API_KEY), and
mobile_service reaches llm_service for a record's AI actions and forwards chat to it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from dotenv import dotenv_values

from common.config import REPO_ROOT
from tests.auth import bearer
from tests.sse import sse_events

pytestmark = pytest.mark.e2e

# Short, so that expiry can be seen; the other tests use persistent sessions so a slow machine
# cannot expire them mid-test.
CHAT_TTL_SECONDS = 2


def provider_configured_in_files() -> bool:
    """A developer's own provider key in a .env file would make the launcher skip the canned upstream."""
    files = (REPO_ROOT / ".env", REPO_ROOT / "llm_service" / ".env")
    return any(path.exists() and dotenv_values(path).get("LLM_API_KEY") for path in files)


@pytest.fixture(scope="module")
def suite(launch_suite: Callable[..., Any], request: pytest.FixtureRequest) -> Any:
    env = {
        "CHAT_TTL_SECONDS": str(CHAT_TTL_SECONDS),
        "LLM_MAX_RETRIES": "0",
        "LLM_TIMEOUT_SECONDS": "1.5",
        "LLM_API_KEY": "",
        "LLM_BASE_URL": "",
    }
    if provider_configured_in_files():
        env.update(LLM_BASE_URL=request.getfixturevalue("fake_llm_url"), LLM_API_KEY="test-key")
    return launch_suite("user_service", "mobile_service", "llm_service", env=env)


@pytest.fixture(scope="module")
def llm(suite: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=suite.url("llm_service"), timeout=30) as client:
        yield client


def sign_up(suite: Any) -> dict[str, str]:
    """Register and log in through user_service; bearer headers for the other services."""
    username = f"u{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=suite.url("user_service"), timeout=30) as users:
        registered = users.post("/api/v1/auth/register", json={"username": username, "password": "long enough pw"})
        assert registered.status_code == 201, registered.text
        tokens = users.post("/api/v1/auth/login", json={"username": username, "password": "long enough pw"}).json()
    return bearer(tokens["access_token"])


def new_session(llm: httpx.Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = llm.post("/api/v1/chat/sessions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def messages_of(llm: httpx.Client, headers: dict[str, str], session_id: str) -> list[dict[str, Any]]:
    response = llm.get(f"/api/v1/chat/sessions/{session_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_launcher_says_loudly_that_replies_are_canned(suite: Any) -> None:
    if provider_configured_in_files():
        pytest.skip("a .env file configures LLM_API_KEY: the launcher rightly starts no canned upstream")
    assert suite.wait_for_output("Replies are CANNED", timeout=5)


def test_chat_with_and_without_streaming_and_history(suite: Any, llm: httpx.Client) -> None:
    me = sign_up(suite)
    session = new_session(llm, me, title="Weekend", persistent=True)
    sid = session["id"]

    plain = llm.post(f"/api/v1/chat/sessions/{sid}/messages", json={"content": "Plan my Saturday"}, headers=me)
    assert plain.status_code == 200, plain.text
    reply = plain.json()["message"]["content"]
    assert "Plan my Saturday" in reply

    with llm.stream(
        "POST", f"/api/v1/chat/sessions/{sid}/messages", json={"content": "And Sunday?", "stream": True}, headers=me
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response.iter_lines()))
    assert events[-1][0] == "done" and [n for n, _ in events[:-1]] == ["delta"] * (len(events) - 1)
    streamed = "".join(data["content"] for _, data in events[:-1])

    history = messages_of(llm, me, sid)
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "Plan my Saturday"),
        ("assistant", reply),
        ("user", "And Sunday?"),
        ("assistant", streamed),
    ]
    assert history[-1]["id"] == events[-1][1]["message_id"]
    assert [s["id"] for s in llm.get("/api/v1/chat/sessions", headers=me).json()["data"]] == [sid]

    stranger = sign_up(suite)
    for response in (
        llm.get(f"/api/v1/chat/sessions/{sid}", headers=stranger),
        llm.post(f"/api/v1/chat/sessions/{sid}/messages", json={"content": "hi"}, headers=stranger),
        llm.delete(f"/api/v1/chat/sessions/{sid}", headers=stranger),
    ):
        assert response.status_code == 404 and response.json()["code"] == "not_found"

    usage = llm.get("/api/v1/usage", headers=me).json()
    assert usage["totals"]["requests"] == 2 and usage["totals"]["total_tokens"] > 0
    ready = llm.get("/ready").json()
    assert ready["status"] == "ok" and ready["checks"]["llm_provider"] == "ok"


def test_session_expires_after_its_ttl_unless_persistent(suite: Any, llm: httpx.Client) -> None:
    me = sign_up(suite)
    fleeting = new_session(llm, me)
    kept = new_session(llm, me, persistent=True)
    assert fleeting["expires_at"] is not None and kept["expires_at"] is None
    deadline = time.monotonic() + 10 * CHAT_TTL_SECONDS
    while time.monotonic() < deadline and llm.get(f"/api/v1/chat/sessions/{fleeting['id']}", headers=me).is_success:
        time.sleep(0.25)
    gone = llm.get(f"/api/v1/chat/sessions/{fleeting['id']}", headers=me)
    assert gone.status_code == 404, gone.text
    stays = llm.get(f"/api/v1/chat/sessions/{kept['id']}", headers=me)
    assert stays.status_code == 200, stays.text
    assert [s["id"] for s in llm.get("/api/v1/chat/sessions", headers=me).json()["data"]] == [kept["id"]]


def test_the_official_openai_sdk_completes_and_streams(suite: Any) -> None:
    me = sign_up(suite)
    token = me["Authorization"].removeprefix("Bearer ")
    client = openai.OpenAI(base_url=f"{suite.url('llm_service')}/v1", api_key=token, max_retries=0, timeout=30)
    try:
        assert "canned-chat" in {m.id for m in client.models.list().data}
        completion = client.chat.completions.create(
            model="canned-chat", messages=[{"role": "user", "content": "Hello gateway"}]
        )
        assert "Hello gateway" in completion.choices[0].message.content
        assert completion.usage is not None and completion.usage.total_tokens > 0

        stream = client.chat.completions.create(
            model="canned-chat",
            messages=[{"role": "user", "content": "Stream to me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert "Stream to me" in text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{suite.url('llm_service')}/v1", api_key="not-a-token", max_retries=0).models.list()
        with pytest.raises(openai.InternalServerError) as failed:
            client.chat.completions.create(model="canned-chat", messages=[{"role": "user", "content": "[[fail:500]]"}])
        assert failed.value.status_code == 502
    finally:
        client.close()
    assert llm_usage_requests(suite, me) == 2  # the failed call used no tokens


def llm_usage_requests(suite: Any, headers: dict[str, str]) -> int:
    response = httpx.get(f"{suite.url('llm_service')}/api/v1/usage", headers=headers, timeout=30)
    return response.json()["totals"]["requests"]


@pytest.mark.parametrize(
    ("marker", "status", "code"),
    [
        ("[[fail:500]]", 502, "upstream_error"),
        ("[[fail:429]]", 429, "rate_limited"),
        ("[[slow:4]]", 504, "upstream_timeout"),
    ],
)
def test_upstream_failures_keep_the_message_and_the_service(
    suite: Any, llm: httpx.Client, marker: str, status: int, code: str
) -> None:
    me = sign_up(suite)
    sid = new_session(llm, me, persistent=True)["id"]
    response = llm.post(f"/api/v1/chat/sessions/{sid}/messages", json={"content": f"hi {marker}"}, headers=me)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    if status == 429:
        assert int(response.headers["Retry-After"]) >= 1
    assert [m["content"] for m in messages_of(llm, me, sid)] == [f"hi {marker}"]
    assert llm.get("/health").status_code == 200
    assert llm.post(f"/api/v1/chat/sessions/{sid}/messages", json={"content": "ok now"}, headers=me).status_code == 200


def test_cut_stream_gives_an_error_event_and_keeps_the_partial_reply(suite: Any, llm: httpx.Client) -> None:
    me = sign_up(suite)
    sid = new_session(llm, me, persistent=True)["id"]
    body = {"content": "tell me [[cut]] everything", "stream": True}
    with llm.stream("POST", f"/api/v1/chat/sessions/{sid}/messages", json=body, headers=me) as response:
        events = list(sse_events(response.iter_lines()))
    assert events[0][0] == "delta" and events[-1][0] == "error"
    assert events[-1][1]["code"] == "upstream_error"
    history = messages_of(llm, me, sid)
    assert history[0]["content"] == "tell me [[cut]] everything"
    assert history[1]["incomplete"] is True
    assert history[1]["content"] == "".join(d["content"] for n, d in events if n == "delta")
    assert llm.get("/health").status_code == 200


def test_client_leaving_mid_stream_keeps_the_partial_reply(suite: Any, llm: httpx.Client) -> None:
    me = sign_up(suite)
    sid = new_session(llm, me, persistent=True)["id"]
    body = {"content": "a long answer please [[drip:0.3]]", "stream": True}
    url = f"{suite.url('llm_service')}/api/v1/chat/sessions/{sid}/messages"
    with httpx.stream("POST", url, json=body, headers=me, timeout=30) as response:
        first = next(sse_events(response.iter_lines()))
        assert first[0] == "delta"
    # leaving the block closed the connection mid-answer
    deadline = time.monotonic() + 20
    history = messages_of(llm, me, sid)
    while time.monotonic() < deadline and len(history) < 2:
        time.sleep(0.2)
        history = messages_of(llm, me, sid)
    assert history[-1]["role"] == "assistant" and history[-1]["incomplete"] is True
    assert history[-1]["content"].startswith(first[1]["content"])


def test_mobile_summarize_stores_a_summary_and_chat_goes_through_mobile(suite: Any) -> None:
    me = sign_up(suite)
    with httpx.Client(base_url=suite.url("mobile_service"), timeout=30) as mobile:
        content = "The tomatoes need water every morning. Basil grows well next to the tomatoes."
        created = mobile.post("/api/v1/records", json={"title": "Garden", "content": content}, headers=me)
        assert created.status_code == 201, created.text
        record_id = created.json()["id"]
        summarised = mobile.post(f"/api/v1/records/{record_id}/ai/summarize", headers=me)
        assert summarised.status_code == 200, summarised.text
        summary = mobile.get(f"/api/v1/records/{record_id}", headers=me).json()["summary"]
        assert summary and "tomatoes" in summary

        tags = mobile.post(f"/api/v1/records/{record_id}/ai/tags", headers=me)
        assert tags.status_code == 200 and "tomatoes" in tags.json()["result"]

        # Chat through mobile_service's forwarding, the record's text pulled into the context.
        session = mobile.post("/api/v1/chat/sessions", json={"persistent": True}, headers=me)
        assert session.status_code == 201, session.text
        body = {"content": "[[echo]] what about my garden?", "stream": True, "record_ids": [record_id]}
        with mobile.stream(
            "POST", f"/api/v1/chat/sessions/{session.json()['id']}/messages", json=body, headers=me
        ) as r:
            assert r.status_code == 200
            events = list(sse_events(r.iter_lines()))
        # The history is paginated, query string passed on by the forwarding: newest page first.
        url = f"/api/v1/chat/sessions/{session.json()['id']}"
        newest = mobile.get(url, params={"limit": 1}, headers=me).json()
        assert newest["message_count"] == 2 and newest["has_more_messages"] is True
        assert [m["role"] for m in newest["messages"]] == ["assistant"]
        older = mobile.get(url, params={"before": newest["messages_offset"]}, headers=me).json()
        assert [m["role"] for m in older["messages"]] == ["user"] and older["has_more_messages"] is False
    assert events[-1][0] == "done"
    assert "Basil grows well" in "".join(d["content"] for n, d in events if n == "delta")
