"""End to end through the launcher: record history (docs/api.md §16, issue 17). A phone (bearer
token at mobile_service, syncing) and a browser (a session at web_service, its same-origin API)
edit the same record: edits of different paragraphs merge, edits of one line are a 409 that
keeps both sides; a restored revision and an undeleted record come back through the sync feed;
another user sees none of it; and, in a suite with windows of zero, the purge removes tombstones
and old revisions and a cursor from before it gets the resync answer."""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.accounts import register_and_login
from tests.auth import bearer
from tests.waiting import wait_until
from web_service.tests.web_user import PASSWORD, WebUser

pytestmark = pytest.mark.e2e

PLAN = "# Weekend\n\nBuy milk and bread.\n\nCall Ann about the trip.\n\nRead a book.\n"


@pytest.fixture(scope="module")
def suite(launch_suite: Callable[..., Any]) -> Any:
    return launch_suite("user_service", "mobile_service", "web_service")


@pytest.fixture(scope="module")
def api(suite: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=suite.url("mobile_service"), timeout=30) as client:
        yield client


@pytest.fixture
def browser(suite: Any) -> Iterator[WebUser]:
    user = WebUser(suite.url("web_service")).sign_up()
    yield user
    user.close()


@pytest.fixture
def phone(api: httpx.Client, browser: WebUser) -> dict[str, str]:
    """The same person's phone: a token from logging in through mobile_service."""
    login = api.post("/api/v1/auth/login", json={"username": browser.username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {**bearer(login.json()["access_token"]), "X-Device": "phone"}


def pull(api: httpx.Client, me: dict[str, str], cursor: str | None = None) -> tuple[list[dict[str, Any]], str]:
    changes: list[dict[str, Any]] = []
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/sync/changes", params=params, headers=me)
        assert page.status_code == 200, page.text
        changes += page.json()["changes"]
        cursor = page.json()["cursor"]
        if not page.json()["has_more"]:
            return changes, cursor


def push(api: httpx.Client, me: dict[str, str], *changes: dict[str, Any]) -> list[dict[str, Any]]:
    response = api.post("/api/v1/sync/push", json={"changes": list(changes)}, headers=me)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def revisions(client: Any, path: str, **kw: Any) -> list[dict[str, Any]]:
    response = client.get(path, **kw) if isinstance(client, httpx.Client) else client.api("GET", path)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_offline_phone_edit_and_browser_edit_of_another_paragraph_both_survive(
    api: httpx.Client, browser: WebUser, phone: dict[str, str]
) -> None:
    record_id = str(uuid.uuid4())
    created = push(api, phone, {"id": record_id, "op": "upsert", "fields": {"title": "Weekend", "content": PLAN}})
    assert created[0]["status"] == "applied"
    synced, _ = pull(api, phone)
    assert [c["version"] for c in synced if c["id"] == record_id] == [1]  # the phone goes offline at version 1

    edited = browser.api(
        "PATCH", f"/api/v1/records/{record_id}", json={"version": 1, "content": PLAN.replace("milk", "oat milk")}
    )
    assert edited.status_code == 200, edited.text

    offline = PLAN.replace("Read a book.", "Read two books.")
    result = push(api, phone, {"id": record_id, "op": "upsert", "base_version": 1, "fields": {"content": offline}})[0]
    assert result["status"] == "merged", result
    expected = "# Weekend\n\nBuy oat milk and bread.\n\nCall Ann about the trip.\n\nRead two books.\n"
    assert result["record"]["content"] == expected and result["record"]["version"] == 3
    seen = browser.api("GET", f"/api/v1/records/{record_id}")
    assert seen.status_code == 200 and seen.json()["content"] == expected
    history = revisions(browser, f"/api/v1/records/{record_id}/revisions")
    assert [(r["kind"], r["version"], r["device"]) for r in history] == [
        ("stale_edit", 1, "phone"),
        ("version", 2, None),
        ("version", 1, "phone"),
    ]


def test_edits_of_the_same_line_are_409_with_both_sides_and_nothing_lost(
    api: httpx.Client, browser: WebUser, phone: dict[str, str]
) -> None:
    record = api.post("/api/v1/records", json={"title": "Weekend", "content": PLAN}, headers=phone).json()
    url = f"/api/v1/records/{record['id']}"
    from_phone = api.patch(url, json={"version": 1, "content": PLAN.replace("Call Ann", "Text Ann")}, headers=phone)
    assert from_phone.status_code == 200
    from_browser = browser.api("PATCH", url, json={"version": 1, "content": PLAN.replace("Call Ann", "Visit Ann")})
    assert from_browser.status_code == 409, from_browser.text
    body = from_browser.json()
    assert body["code"] == "conflict" and body["record"]["version"] == 2
    conflict = body["conflict"]
    assert conflict["base"]["content"] == PLAN
    assert [(h["field"], h["theirs"], h["yours"]) for h in conflict["hunks"]] == [
        ("content", "Text Ann about the trip.\n", "Visit Ann about the trip.\n")
    ]
    kept = {r["revision"]: r for r in revisions(api, f"{url}/revisions", headers=phone)}
    texts = [api.get(f"{url}/revisions/{n}", headers=phone).json()["content"] for n in kept]
    assert any("Text Ann" in t for t in texts) and any("Visit Ann" in t for t in texts)
    assert conflict["kept"]["yours"] in kept and kept[conflict["kept"]["yours"]]["kind"] == "stale_edit"


def test_restore_of_a_revision_and_undelete_from_the_trash_appear_in_the_sync_feed(
    api: httpx.Client, browser: WebUser, phone: dict[str, str]
) -> None:
    record = api.post("/api/v1/records", json={"title": "Draft", "content": "first words\n"}, headers=phone).json()
    url = f"/api/v1/records/{record['id']}"
    assert browser.api("PATCH", url, json={"content": "second words\n"}).status_code == 200
    _, cursor = pull(api, phone)

    restored = browser.api("POST", f"{url}/revisions/1/restore")
    assert restored.status_code == 200 and restored.json()["content"] == "first words\n"
    changes, cursor = pull(api, phone, cursor)
    assert [(c["id"], c["op"], c["record"]["content"]) for c in changes] == [(record["id"], "upsert", "first words\n")]

    assert browser.api("DELETE", url).status_code == 204
    changes, cursor = pull(api, phone, cursor)
    assert [(c["id"], c["op"]) for c in changes] == [(record["id"], "delete")]
    trash = browser.api("GET", "/api/v1/records/trash").json()["data"]
    assert [(t["id"], t["title"]) for t in trash] == [(record["id"], "Draft")]
    back = api.post(f"{url}/restore", headers=phone)
    assert back.status_code == 200 and back.json()["content"] == "first words\n"
    changes, _ = pull(api, phone, cursor)
    assert [(c["id"], c["op"], c["record"]["title"]) for c in changes] == [(record["id"], "upsert", "Draft")]
    # a device syncing from nothing gets the record live
    fresh, _ = pull(api, phone)
    assert {c["id"]: c["op"] for c in fresh}[record["id"]] == "upsert"


def test_another_users_revisions_and_trash_are_404(suite: Any, api: httpx.Client, phone: dict[str, str]) -> None:
    record = api.post("/api/v1/records", json={"title": "Mine", "content": "a\n"}, headers=phone).json()
    api.patch(f"/api/v1/records/{record['id']}", json={"content": "b\n"}, headers=phone)
    deleted = api.post("/api/v1/records", json={"title": "Binned"}, headers=phone).json()
    api.delete(f"/api/v1/records/{deleted['id']}", headers=phone)
    stranger = bearer(register_and_login(suite.url("user_service"))["access_token"])
    for method, path in [
        ("GET", f"/api/v1/records/{record['id']}/revisions"),
        ("GET", f"/api/v1/records/{record['id']}/revisions/1"),
        ("GET", f"/api/v1/records/{record['id']}/revisions/1/diff?against=current"),
        ("POST", f"/api/v1/records/{record['id']}/revisions/1/restore"),
        ("POST", f"/api/v1/records/{deleted['id']}/restore"),
    ]:
        response = api.request(method, path, headers=stranger)
        assert response.status_code == 404 and response.json()["code"] == "not_found", (path, response.text)
    assert api.get("/api/v1/records/trash", headers=stranger).json()["data"] == []
    assert api.get(f"/api/v1/records/{record['id']}", headers=phone).json()["content"] == "b\n"


def raw_get(base_url: str, path: str, headers: dict[str, str]) -> int:
    """A GET with the path sent exactly as written (no client-side dot-segment resolution)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_dot_segments_in_history_paths_are_404(suite: Any, api: httpx.Client, phone: dict[str, str]) -> None:
    record = api.post("/api/v1/records", json={"title": "t", "content": "a\n"}, headers=phone).json()
    api.patch(f"/api/v1/records/{record['id']}", json={"content": "b\n"}, headers=phone)
    for path in [
        f"/api/v1/records/{record['id']}/revisions/..",
        f"/api/v1/records/{record['id']}/revisions/../revisions",
        f"/api/v1/records/{record['id']}/revisions/1/../1",
        "/api/v1/records/trash/..",
        f"/api/v1/records/{record['id']}/revisions/%2e%2e",
    ]:
        assert raw_get(suite.url("mobile_service"), path, phone) == 404, path


# ---------------------------------------------------------------- the purge, in a suite with windows of zero


PURGE_ENV = {
    "RECORD_TRASH_DAYS": "0",
    "RECORD_REVISIONS_DAYS": "0",
    "RECORD_REVISIONS_KEEP": "2",
    "RECORD_PURGE_INTERVAL_SECONDS": "0.3",
}


@pytest.fixture(scope="module")
def purging(launch_suite: Callable[..., Any]) -> Any:
    return launch_suite("user_service", "mobile_service", env=PURGE_ENV)


def test_purge_past_the_windows_and_an_older_cursor_gets_the_resync_code(purging: Any) -> None:
    with httpx.Client(base_url=purging.url("mobile_service"), timeout=30) as api:
        me = bearer(register_and_login(purging.url("user_service"))["access_token"])
        doomed = api.post("/api/v1/records", json={"title": "doomed", "content": "x\n"}, headers=me).json()
        kept = api.post("/api/v1/records", json={"title": "kept", "content": "0\n"}, headers=me).json()
        for n in range(1, 6):
            api.patch(f"/api/v1/records/{kept['id']}", json={"content": f"{n}\n"}, headers=me)
        _, before = pull(api, me)
        assert api.delete(f"/api/v1/records/{doomed['id']}", headers=me).status_code == 204
        _, after = pull(api, me)

        def purged() -> bool:
            changes, _ = pull(api, me)
            return doomed["id"] not in {c["id"] for c in changes}

        assert wait_until(purged, 30), "the tombstone was not purged"
        stale = api.get("/api/v1/sync/changes", params={"cursor": before}, headers=me)
        assert stale.status_code == 400 and stale.json()["code"] == "invalid_cursor", stale.text
        assert api.get("/api/v1/sync/changes", params={"cursor": after}, headers=me).status_code == 200
        assert api.get("/api/v1/records/trash", headers=me).json()["total_count"] == 0
        assert api.post(f"/api/v1/records/{doomed['id']}/restore", headers=me).status_code == 404

        def trimmed() -> bool:
            return api.get(f"/api/v1/records/{kept['id']}/revisions", headers=me).json()["total_count"] == 2

        assert wait_until(trimmed, 30), "old revisions were not trimmed"
        newest = api.get(f"/api/v1/records/{kept['id']}/revisions", headers=me).json()["data"]
        assert [r["revision"] for r in newest] == [5, 4]
        assert api.get(f"/api/v1/records/{kept['id']}/revisions/4", headers=me).json()["content"] == "3\n"
