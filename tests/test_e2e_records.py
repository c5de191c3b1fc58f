"""End to end through the launcher, with only mobile_service's base URL (docs/api.md §6, issue 3):
register → log in → create → list → search (English, Chinese) → stale update 409 → delete →
sync on a second device → push with a conflict → publish / public read / unpublish, plus the
hostile inputs that must get the errors of docs/api.md §4, never a 500."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.auth import bearer
from tests.sse import sse_events

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def base_url(launch_suite: Callable[..., Any]) -> str:
    suite = launch_suite("user_service", "mobile_service", "llm_service")
    return suite.url("mobile_service")


@pytest.fixture(scope="module")
def api(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        yield client


def sign_up(api: httpx.Client) -> dict[str, str]:
    username = f"e2e_{uuid.uuid4().hex[:10]}"
    registered = api.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    login = api.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return bearer(login.json()["access_token"])


def test_record_life_cycle_sync_and_publishing(api: httpx.Client) -> None:
    phone = sign_up(api)
    me = api.get("/api/v1/users/me", headers=phone)
    assert me.status_code == 200

    created = api.post(
        "/api/v1/records",
        json={"title": "Weekly meeting", "content": "项目会议纪要: budget approved", "tags": ["Work"]},
        headers=phone,
    )
    assert created.status_code == 201
    record = created.json()
    second = api.post("/api/v1/records", json={"title": "Shopping", "content": "milk, eggs"}, headers=phone).json()

    listed = api.get("/api/v1/records", headers=phone).json()
    assert listed["total_count"] == 2 and {r["id"] for r in listed["data"]} == {record["id"], second["id"]}
    assert [r["id"] for r in api.get("/api/v1/records", params={"q": "budget"}, headers=phone).json()["data"]] == [
        record["id"]
    ]
    assert [r["id"] for r in api.get("/api/v1/records", params={"q": "会议"}, headers=phone).json()["data"]] == [
        record["id"]
    ]

    url = f"/api/v1/records/{record['id']}"
    assert api.patch(url, json={"title": "Weekly meeting (edited)", "version": 1}, headers=phone).status_code == 200
    stale = api.patch(url, json={"title": "from an old copy", "version": 1}, headers=phone)
    assert stale.status_code == 409 and stale.json()["code"] == "conflict"
    assert stale.json()["record"]["title"] == "Weekly meeting (edited)"

    assert api.delete(f"/api/v1/records/{second['id']}", headers=phone).status_code == 204
    assert api.get(f"/api/v1/records/{second['id']}", headers=phone).status_code == 404

    # A second device with the same account syncs from nothing and gets everything, tombstone included.
    tablet = {"Authorization": phone["Authorization"]}
    changes: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.get(
            "/api/v1/sync/changes", params={"limit": 1, **({"cursor": cursor} if cursor else {})}, headers=tablet
        ).json()
        changes += page["changes"]
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    by_id = {c["id"]: c for c in changes}
    assert by_id[record["id"]]["record"]["title"] == "Weekly meeting (edited)"
    assert by_id[second["id"]]["op"] == "delete" and by_id[second["id"]]["record"]["deleted_at"]

    pushed = api.post(
        "/api/v1/sync/push",
        json={
            "changes": [
                {"id": str(uuid.uuid4()), "op": "upsert", "base_version": None, "fields": {"title": "from the tablet"}},
                {"id": record["id"], "op": "upsert", "base_version": 1, "fields": {"title": "tablet's stale edit"}},
            ]
        },
        headers=tablet,
    )
    assert pushed.status_code == 200
    assert [r["status"] for r in pushed.json()["results"]] == ["applied", "conflict"]
    after_push = api.get("/api/v1/sync/changes", params={"cursor": cursor}, headers=phone).json()
    assert [c["record"]["title"] for c in after_push["changes"]] == ["from the tablet"]

    published = api.post(f"{url}/publish", headers=phone)
    assert published.status_code == 200
    slug = published.json()["slug"]
    public = httpx.get(f"{api.base_url}/api/v1/public/records/{slug}")
    assert public.status_code == 200
    assert public.json()["title"] == "Weekly meeting (edited)" and "id" not in public.json()
    assert api.delete(f"{url}/publish", headers=phone).status_code == 200
    assert httpx.get(f"{api.base_url}/api/v1/public/records/{slug}").status_code == 404


def test_hostile_input_gets_spec_errors_never_500(api: httpx.Client) -> None:
    alice, bob = sign_up(api), sign_up(api)
    record = api.post("/api/v1/records", json={"title": "alice only"}, headers=alice).json()
    checks = [
        (api.get(f"/api/v1/records/{record['id']}", headers=bob), 404, "not_found"),
        (api.patch(f"/api/v1/records/{record['id']}", json={"title": "x"}, headers=bob), 404, "not_found"),
        (api.post("/api/v1/records", json={"content": "x" * 200_001}, headers=alice), 422, "validation_error"),
        (
            api.post("/api/v1/records", json={"tags": [f"t{i}" for i in range(21)]}, headers=alice),
            422,
            "validation_error",
        ),
        (api.get("/api/v1/records", params={"limit": 1000}, headers=alice), 422, "validation_error"),
        (api.get("/api/v1/records/not-a-uuid", headers=alice), 404, "not_found"),
        (api.get("/api/v1/sync/changes", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=alice), 400, "invalid_cursor"),
        (api.get("/api/v1/records", headers={"Authorization": "Bearer forged"}), 401, "invalid_token"),
        # Another user's id for a create: like an id nobody uses, nothing about it revealed.
        (api.post("/api/v1/records", json={"id": record["id"], "title": "x"}, headers=bob), 404, "not_found"),
    ]
    for response, status, code in checks:
        assert response.status_code == status, (response.request.url, response.text)
        body = response.json()
        assert body["code"] == code and body["request_id"], body


def test_ai_summary_through_llm_service(api: httpx.Client) -> None:
    user = sign_up(api)
    record = api.post(
        "/api/v1/records", json={"title": "Trip", "content": "We visited the museum and the old town."}, headers=user
    ).json()
    summary = api.post(f"/api/v1/records/{record['id']}/ai/summarize", headers=user)
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["applied"] is True and isinstance(body["result"], str) and body["result"]
    assert api.get(f"/api/v1/records/{record['id']}", headers=user).json()["summary"] == body["result"]
    tags = api.post(f"/api/v1/records/{record['id']}/ai/tags", headers=user)
    assert tags.status_code == 200 and isinstance(tags.json()["result"], list)


def test_usage_is_reachable_through_the_single_base_url(api: httpx.Client) -> None:
    user = sign_up(api)
    response = api.get("/api/v1/usage", headers=user)
    assert response.status_code == 200, response.text
    assert {"since", "totals", "by_day"} <= response.json().keys()
    assert api.get("/api/v1/usage").status_code == 401


def test_leaving_a_chat_stream_through_mobile_keeps_the_partial_reply(api: httpx.Client) -> None:
    user = sign_up(api)
    session = api.post("/api/v1/chat/sessions", json={"persistent": True}, headers=user)
    assert session.status_code == 201, session.text
    url = f"/api/v1/chat/sessions/{session.json()['id']}"
    body = {"content": "a long answer please [[drip:0.3]]", "stream": True}
    with api.stream("POST", f"{url}/messages", json=body, headers=user) as response:
        assert response.status_code == 200
        first = next(sse_events(response.iter_lines()))
        assert first[0] == "delta"
    # Leaving closed the client's connection to mobile_service; llm_service learns of it only
    # if the proxy closes its own connection too, and then keeps the partial reply.
    deadline = time.monotonic() + 20
    history = api.get(url, headers=user).json()["messages"]
    while time.monotonic() < deadline and len(history) < 2:
        time.sleep(0.2)
        history = api.get(url, headers=user).json()["messages"]
    assert history[-1]["role"] == "assistant" and history[-1]["incomplete"] is True
    assert history[-1]["content"].startswith(first[1]["content"])
