"""Steps the chat tests share: a new session, its history, a message sent."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def new_session(client: TestClient, headers: dict[str, str], **body: Any) -> str:
    response = client.post("/api/v1/chat/sessions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def history(client: TestClient, headers: dict[str, str], session_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/chat/sessions/{session_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def send(client: TestClient, headers: dict[str, str], session_id: str, content: str, **extra: Any) -> Any:
    return client.post(
        f"/api/v1/chat/sessions/{session_id}/messages", json={"content": content, **extra}, headers=headers
    )
