"""Bounds of chat storage: paginated history, messages per session, sessions per user, tail-only context."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from llm_service.tests.chat_api import new_session, send


def test_history_is_paginated_newest_page_first(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(chat_page_default=4)) as c:
        sid = new_session(c, me)
        for i in range(5):
            assert send(c, me, sid, f"question {i}").status_code == 200
        url = f"/api/v1/chat/sessions/{sid}"

        newest = c.get(url, headers=me).json()  # the default call: the newest page, oldest first
        assert newest["message_count"] == 10 and newest["messages_offset"] == 6 and newest["has_more_messages"]
        assert [m["role"] for m in newest["messages"]] == ["user", "assistant", "user", "assistant"]
        assert newest["messages"][0]["content"] == "question 3"

        older = c.get(url, params={"before": newest["messages_offset"], "limit": 5}, headers=me).json()
        assert older["messages_offset"] == 1 and len(older["messages"]) == 5 and older["has_more_messages"]
        first = c.get(url, params={"before": older["messages_offset"]}, headers=me).json()
        assert [m["content"] for m in first["messages"]] == ["question 0"] and not first["has_more_messages"]
        seen = first["messages"] + older["messages"] + newest["messages"]
        assert len({m["id"] for m in seen}) == 10  # the pages join without gap or overlap

        assert c.get(url, params={"before": 0}, headers=me).json()["messages"] == []
        assert len(c.get(url, params={"before": 10**6}, headers=me).json()["messages"]) == 4
        for bad in ({"before": -1}, {"limit": 0}, {"limit": "x"}):
            response = c.get(url, params=bad, headers=me)
            assert response.status_code == 422 and response.json()["code"] == "validation_error"


def test_a_full_session_answers_409_and_keeps_its_history(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(chat_max_messages_per_session=4)) as c:
        sid = new_session(c, me)
        assert send(c, me, sid, "one").status_code == 200
        assert send(c, me, sid, "two").status_code == 200
        full = send(c, me, sid, "three")
        assert full.status_code == 409 and full.json()["code"] == "conflict"
        assert "CHAT_MAX_MESSAGES_PER_SESSION" in full.json()["detail"]
        streamed = send(c, me, sid, "three", stream=True)
        assert streamed.status_code == 409
        detail = c.get(f"/api/v1/chat/sessions/{sid}", headers=me).json()
        assert detail["message_count"] == 4  # nothing was stored by the refused messages
        assert send(c, me, new_session(c, me), "fresh start").status_code == 200


def test_sessions_per_user_are_capped_and_deleting_one_makes_room(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me, other = auth_headers(), auth_headers()
    with TestClient(llm_app_factory(chat_max_sessions_per_user=3)) as c:
        ids = [new_session(c, me) for _ in range(3)]
        refused = c.post("/api/v1/chat/sessions", json={}, headers=me)
        assert refused.status_code == 409 and refused.json()["code"] == "conflict"
        assert "CHAT_MAX_SESSIONS_PER_USER" in refused.json()["detail"]
        assert new_session(c, other)  # the cap is per user
        assert c.delete(f"/api/v1/chat/sessions/{ids[0]}", headers=me).status_code == 204
        assert new_session(c, me)
        assert len(c.get("/api/v1/chat/sessions", headers=me).json()["data"]) == 3


def test_expired_sessions_do_not_count_against_the_cap(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(chat_max_sessions_per_user=2)) as c:
        gone = new_session(c, me)
        kept = new_session(c, me, persistent=True)
        # The session's keys vanish as at expiry; its id stays in the index until pruned.
        redis = c.app_state["redis"]
        c.portal.call(redis.delete, f"chat:session:{gone}", f"chat:messages:{gone}")  # type: ignore[union-attr]
        assert new_session(c, me)
        listed = {s["id"] for s in c.get("/api/v1/chat/sessions", headers=me).json()["data"]}
        assert kept in listed and gone not in listed and len(listed) == 2


def test_context_reads_only_the_tail_of_a_long_history(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(chat_context_max_messages=3)) as c:
        sid = new_session(c, me, system_prompt="Short.")
        for i in range(6):
            assert send(c, me, sid, f"turn {i}").status_code == 200
        sent = json.loads(send(c, me, sid, "[[echo]]").json()["message"]["content"])
        assert sent[0] == {"role": "system", "content": "Short."}
        assert [m["content"] for m in sent[1:]][-1] == "[[echo]]" and len(sent) == 1 + 3
        assert "turn 0" not in json.dumps(sent)


def test_a_large_page_is_read_whole(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    """A page over PARSE_IN_THREAD_CHARS is parsed in a worker thread; the answer is the same."""
    me = auth_headers()
    sid = new_session(client, me)
    for i in range(9):
        assert send(client, me, sid, f"long note {i} " + "x" * 30_000).status_code == 200
    detail = client.get(f"/api/v1/chat/sessions/{sid}", params={"limit": 18}, headers=me).json()
    assert detail["message_count"] == 18 and detail["messages_offset"] == 0
    users = [m["content"] for m in detail["messages"] if m["role"] == "user"]
    assert [u.split(" x")[0] for u in users] == [f"long note {i}" for i in range(9)]
    assert sum(len(u) for u in users) > 256 * 1024
