"""Chat sessions in Redis: shape, ownership, expiry and persistence (docs/api.md §7)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient


def create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/chat/sessions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_read_list_rename_delete(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    me = auth_headers()
    first = create(client, me, title="Trip plans", system_prompt="You plan trips.")
    second = create(client, me)
    assert set(first) == {"id", "title", "model", "persistent", "created_at", "updated_at", "expires_at"}
    assert first["title"] == "Trip plans" and first["persistent"] is False
    assert first["model"] == "gpt-4o-mini"
    assert second["title"] == "New chat"

    listed = client.get("/api/v1/chat/sessions", headers=me).json()["data"]
    assert [s["id"] for s in listed] == [second["id"], first["id"]]  # newest activity first

    renamed = client.patch(f"/api/v1/chat/sessions/{first['id']}", json={"title": "Japan trip"}, headers=me)
    assert renamed.status_code == 200 and renamed.json()["title"] == "Japan trip"
    listed = client.get("/api/v1/chat/sessions", headers=me).json()["data"]
    assert listed[0]["id"] == first["id"]  # renaming is activity

    detail = client.get(f"/api/v1/chat/sessions/{first['id']}", headers=me).json()
    assert detail["messages"] == [] and detail["system_prompt"] == "You plan trips."

    assert client.delete(f"/api/v1/chat/sessions/{first['id']}", headers=me).status_code == 204
    gone = client.get(f"/api/v1/chat/sessions/{first['id']}", headers=me)
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"
    assert [s["id"] for s in client.get("/api/v1/chat/sessions", headers=me).json()["data"]] == [second["id"]]


def test_expires_at_is_reported_and_persistent_has_none(
    client: TestClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    session = create(client, me)
    expires = datetime.fromisoformat(session["expires_at"])
    updated = datetime.fromisoformat(session["updated_at"])
    assert abs((expires - updated) - timedelta(days=7)) < timedelta(seconds=5)

    kept = create(client, me, persistent=True)
    assert kept["persistent"] is True and kept["expires_at"] is None
    made = client.patch(f"/api/v1/chat/sessions/{session['id']}", json={"persistent": True}, headers=me).json()
    assert made["expires_at"] is None
    unmade = client.patch(f"/api/v1/chat/sessions/{session['id']}", json={"persistent": False}, headers=me).json()
    assert unmade["expires_at"] is not None


def test_another_users_session_is_not_found(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    owner, stranger = auth_headers(), auth_headers()
    session = create(client, owner, title="private")
    url = f"/api/v1/chat/sessions/{session['id']}"
    for method, body in (("GET", None), ("PATCH", {"title": "mine"}), ("DELETE", None)):
        response = client.request(method, url, json=body, headers=stranger)
        assert response.status_code == 404, (method, response.text)
        assert response.json()["code"] == "not_found"
    sent = client.post(f"{url}/messages", json={"content": "hi"}, headers=stranger)
    assert sent.status_code == 404
    assert client.get("/api/v1/chat/sessions", headers=stranger).json()["data"] == []
    assert client.get(url, headers=owner).json()["title"] == "private"


def test_hostile_input_gets_the_error_shape(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    me = auth_headers()
    assert client.get("/api/v1/chat/sessions").status_code == 401
    assert (
        client.get("/api/v1/chat/sessions", headers={"Authorization": "Bearer nope"}).json()["code"] == "invalid_token"
    )
    long_id = client.get(f"/api/v1/chat/sessions/{'x' * 5000}", headers=me)
    assert long_id.status_code == 404
    bad = client.post("/api/v1/chat/sessions", json={"title": "t" * 1000}, headers=me)
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    junk = client.post(
        "/api/v1/chat/sessions", content=b"{not json", headers={**me, "Content-Type": "application/json"}
    )
    assert junk.status_code == 422
    huge_prompt = client.post("/api/v1/chat/sessions", json={"system_prompt": "p" * 9000}, headers=me)
    assert huge_prompt.status_code == 413 and huge_prompt.json()["code"] == "payload_too_large"


def test_session_expires_after_ttl_unless_persistent(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    me = auth_headers()
    with TestClient(llm_app_factory(chat_ttl_seconds=1)) as short:
        fleeting = create(short, me)
        kept = create(short, me, persistent=True)
        short.post(f"/api/v1/chat/sessions/{fleeting['id']}/messages", json={"content": "remember me"}, headers=me)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if short.get(f"/api/v1/chat/sessions/{fleeting['id']}", headers=me).status_code == 404:
                break
            time.sleep(0.25)
        assert short.get(f"/api/v1/chat/sessions/{fleeting['id']}", headers=me).status_code == 404
        assert short.get(f"/api/v1/chat/sessions/{kept['id']}", headers=me).status_code == 200
        listed = [s["id"] for s in short.get("/api/v1/chat/sessions", headers=me).json()["data"]]
        assert listed == [kept["id"]]
