"""Messages and replies: stored history, streaming, provider failures, records in the context."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from common.models.record import Record
from llm_service.tests.chat_api import history, new_session, send
from llm_service.tests.conftest import parse_sse


def test_reply_is_stored_with_the_question(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    me = auth_headers()
    sid = new_session(client, me)
    response = send(client, me, sid, "What should I cook tonight?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"]["role"] == "assistant"
    assert "What should I cook tonight" in body["message"]["content"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] > 0
    messages = history(client, me, sid)
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "What should I cook tonight?"),
        ("assistant", body["message"]["content"]),
    ]
    assert set(messages[0]) == {"id", "role", "content", "created_at", "incomplete"}
    session = client.get(f"/api/v1/chat/sessions/{sid}", headers=me).json()
    assert session["title"] == "What should I cook tonight?"  # an untitled chat is named by its first message


def test_streamed_reply_arrives_as_delta_events_then_done(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    sid = new_session(client, me)
    with client.stream(
        "POST", f"/api/v1/chat/sessions/{sid}/messages", json={"content": "Tell me a story", "stream": True}, headers=me
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.read().decode())
    names = [name for name, _ in events]
    assert names.count("delta") > 3 and names[-1] == "done" and set(names) == {"delta", "done"}
    text = "".join(data["content"] for name, data in events if name == "delta")
    done = events[-1][1]
    assert done["usage"]["completion_tokens"] > 0
    messages = history(client, me, sid)
    assert messages[-1] == {**messages[-1], "id": done["message_id"], "content": text, "incomplete": False}
    assert messages[0]["content"] == "Tell me a story"


@pytest.mark.parametrize(
    ("marker", "status", "code"),
    [
        ("[[fail:500]]", 502, "upstream_error"),
        ("[[fail:429]]", 429, "rate_limited"),
        ("[[slow:3]]", 504, "upstream_timeout"),
    ],
)
def test_provider_failure_keeps_the_question_and_can_be_retried(
    client: TestClient, auth_headers: Callable[..., dict[str, str]], marker: str, status: int, code: str
) -> None:
    me = auth_headers()
    sid = new_session(client, me)
    for stream in (False, True):
        response = send(client, me, sid, f"please answer {marker}", stream=stream)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        if status == 429:
            assert int(response.headers["Retry-After"]) >= 1
    assert [m["role"] for m in history(client, me, sid)] == ["user", "user"]
    assert client.get("/health").status_code == 200

    # The session keeps working: the next question is answered and the failed ones stay in the history.
    ok = send(client, me, sid, "and now a normal question")
    assert ok.status_code == 200
    assert [m["role"] for m in history(client, me, sid)] == ["user", "user", "user", "assistant"]


def test_retry_answers_the_last_question(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    me = auth_headers()
    sid = new_session(client, me)
    assert send(client, me, sid, "first question").status_code == 200
    nothing = client.post(f"/api/v1/chat/sessions/{sid}/retry", json={}, headers=me)
    assert nothing.status_code == 400 and nothing.json()["code"] == "bad_request"
    # A cut stream leaves an incomplete reply, which retry answers again.
    with client.stream(
        "POST",
        f"/api/v1/chat/sessions/{sid}/messages",
        json={"content": "second [[cut]] question", "stream": True},
        headers=me,
    ) as response:
        events = parse_sse(response.read().decode())
    assert events[-1][0] == "error" and events[-1][1]["code"] == "upstream_error"
    retried = client.post(f"/api/v1/chat/sessions/{sid}/retry", json={"stream": False}, headers=me)
    assert retried.status_code == 200, retried.text
    roles = [(m["role"], m["incomplete"]) for m in history(client, me, sid)]
    assert roles == [("user", False), ("assistant", False), ("user", False), ("assistant", True), ("assistant", False)]


def test_cut_stream_ends_with_an_error_event_and_stores_the_partial_reply(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    sid = new_session(client, me)
    with client.stream(
        "POST", f"/api/v1/chat/sessions/{sid}/messages", json={"content": "story [[cut]]", "stream": True}, headers=me
    ) as response:
        assert response.status_code == 200
        events = parse_sse(response.read().decode())
    deltas = "".join(d["content"] for name, d in events if name == "delta")
    assert deltas and events[-1] == ("error", {"code": "upstream_error", "detail": events[-1][1]["detail"]})
    messages = history(client, me, sid)
    assert messages[-1]["role"] == "assistant" and messages[-1]["incomplete"] is True
    assert messages[-1]["content"] == deltas
    assert client.get("/health").status_code == 200


def test_context_is_bounded_but_history_is_whole(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(chat_context_budget_tokens=60)) as small:
        sid = new_session(small, me, system_prompt="Be brief.")
        for i in range(6):
            assert send(small, me, sid, f"message number {i} " + "words " * 20).status_code == 200
        echoed = send(small, me, sid, "[[echo]]").json()["message"]["content"]
        sent = json.loads(echoed)
        assert sent[0] == {"role": "system", "content": "Be brief."}  # the system prompt is always kept
        assert sent[-1] == {"role": "user", "content": "[[echo]]"}
        assert len(sent) < 1 + 13  # not the whole history
        assert "message number 0" not in echoed and len(history(small, me, sid)) == 14


def test_record_ids_bring_in_only_the_callers_records(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    owner_id, other_id = "owner-of-records", "someone-else"
    mine = Record(owner_id=owner_id, title="Garden log", content="Tomatoes planted on May 3rd.")
    theirs = Record(owner_id=other_id, title="Secret", content="The other user's diary.")

    async def seed() -> None:
        async with client.app_state["db"].session() as session:
            session.add_all([mine, theirs])
            await session.commit()

    client.portal.call(seed)  # type: ignore[union-attr]
    me = auth_headers(owner_id)
    sid = new_session(client, me)
    echoed = send(client, me, sid, "[[echo]]", record_ids=[mine.id]).json()["message"]["content"]
    assert "Tomatoes planted on May 3rd." in echoed and "Garden log" in echoed

    for ids in ([theirs.id], [mine.id, theirs.id], ["no-such-record"]):
        refused = send(client, me, sid, "[[echo]] again", record_ids=ids)
        assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    assert all("other user's diary" not in m["content"] for m in history(client, me, sid))


def test_oversized_message_is_refused(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    me = auth_headers()
    sid = new_session(client, me)
    response = send(client, me, sid, "x" * 40_000)
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert send(client, me, sid, "").status_code == 422
    assert history(client, me, sid) == []


def test_client_leaving_mid_stream_stores_the_partial_reply_marked_incomplete(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    """Closing the response after the first delta: the provider stream is closed and what arrived is kept."""
    me = auth_headers()
    sid = new_session(client, me)
    with client.stream(
        "POST",
        f"/api/v1/chat/sessions/{sid}/messages",
        json={"content": "a long story please [[drip:0.2]]", "stream": True},
        headers=me,
    ) as response:
        first = next(response.iter_lines())
        assert first.startswith("event: delta")
    # The server notices the disconnect and stores what it had.
    for _ in range(100):
        messages = history(client, me, sid)
        if len(messages) == 2:
            break
        time.sleep(0.1)
    assert messages[-1]["role"] == "assistant" and messages[-1]["incomplete"] is True
    assert messages[-1]["content"]
