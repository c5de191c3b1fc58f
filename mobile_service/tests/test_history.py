"""Record history through mobile_service's API (docs/api.md §16): revisions, diff, restore, the
trash, stale edits merged or refused with both sides kept, the purge and sync's resync answer;
and the hostile cases: someone else's ids, bogus revision numbers, ``against=`` garbage, dot
segments, huge numbers, stale and future versions."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from common.database import Database, utcnow
from common.models.record_revision import FORMAT_DELTA, FORMAT_FULL, RecordRevision
from mobile_service.app.history import FULL_EVERY, HistoryPolicy, purge_expired
from mobile_service.tests.records_api import assert_error, create

Headers = Callable[[str], dict[str, str]]
PLAN = "# Plan\n\nBuy milk.\n\nCall Ann.\n\nRead a book.\n"


@pytest.fixture
def me(auth_headers: Headers) -> dict[str, str]:
    return auth_headers(str(uuid.uuid4()))


@pytest.fixture
def other(auth_headers: Headers) -> dict[str, str]:
    return auth_headers(str(uuid.uuid4()))


def patch(client: TestClient, headers: dict[str, str], record_id: str, **body: Any) -> Any:
    return client.patch(f"/api/v1/records/{record_id}", json=body, headers=headers)


def revisions_of(client: TestClient, headers: dict[str, str], record_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/records/{record_id}/revisions", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def revision(client: TestClient, headers: dict[str, str], record_id: str, number: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/records/{record_id}/revisions/{number}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def pull(client: TestClient, headers: dict[str, str], cursor: str | None = None) -> tuple[list[dict[str, Any]], str]:
    params = {"cursor": cursor} if cursor else {}
    response = client.get("/api/v1/sync/changes", params={**params, "limit": 500}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["changes"], response.json()["cursor"]


def stored_revisions(database_url: str, record_id: str) -> list[RecordRevision]:
    async def _load() -> list[RecordRevision]:
        db = Database(database_url)
        try:
            async with db.session() as session:
                found = await session.execute(
                    select(RecordRevision)
                    .where(RecordRevision.record_id == record_id)
                    .order_by(RecordRevision.revision)
                )
                return list(found.scalars())
        finally:
            await db.dispose()

    return asyncio.run(_load())


# ---------------------------------------------------------------- revisions


def test_every_change_of_text_keeps_the_state_before_it(mobile_client: TestClient, me: dict[str, str]) -> None:
    record = create(mobile_client, me, title="v1", content="one\n", tags=["a"])
    rid = record["id"]
    assert revisions_of(mobile_client, me, rid)["total_count"] == 0
    assert patch(mobile_client, me, rid, pinned=True).status_code == 200  # no text changed: no revision
    assert patch(mobile_client, me, rid, title="v1").status_code == 200  # the same title: no revision either
    assert revisions_of(mobile_client, me, rid)["total_count"] == 0
    patch(mobile_client, me, rid, title="v2", content="two\n", version=3)
    patch(mobile_client, {**me, "X-Device": "phone"}, rid, tags=["b"])
    listed = revisions_of(mobile_client, me, rid)
    assert [(r["revision"], r["version"], r["title"], r["kind"]) for r in listed["data"]] == [
        (2, 4, "v2", "version"),
        (1, 3, "v1", "version"),
    ]
    assert set(listed["data"][0]) == {"revision", "version", "kind", "title", "created_at", "device"}
    first = revision(mobile_client, me, rid, 1)
    assert (first["content"], first["tags"]) == ("one\n", ["a"])
    page = revisions_of(mobile_client, me, rid, offset=1, limit=1)
    assert page["total_count"] == 2 and [r["revision"] for r in page["data"]] == [1] and not page["has_more"]


def test_device_header_names_who_made_each_state(mobile_client: TestClient, me: dict[str, str]) -> None:
    record = mobile_client.post("/api/v1/records", json={"title": "t"}, headers={**me, "X-Device": "tablet"}).json()
    mobile_client.patch(f"/api/v1/records/{record['id']}", json={"title": "u"}, headers={**me, "X-Device": "phone"})
    mobile_client.patch(f"/api/v1/records/{record['id']}", json={"title": "w"}, headers=me)
    assert [r["device"] for r in revisions_of(mobile_client, me, record["id"])["data"]] == ["phone", "tablet"]
    too_long = mobile_client.patch(
        f"/api/v1/records/{record['id']}", json={"title": "x"}, headers={**me, "X-Device": "d" * 65}
    )
    assert_error(too_long, 422, "validation_error")


def test_many_revisions_read_back_exactly_from_deltas(
    mobile_client: TestClient, me: dict[str, str], database_url: str
) -> None:
    rng = random.Random(7)
    lines = [f"line {n}: {'word ' * rng.randint(1, 12)}\n" for n in range(200)]
    record = create(mobile_client, me, title="long", content="".join(lines))
    states = ["".join(lines)]
    for step in range(FULL_EVERY * 2 + 5):
        lines[rng.randrange(len(lines))] = f"edited {step}\n"
        if step % 9 == 0:
            lines.insert(rng.randrange(len(lines)), f"inserted {step}\n")
        states.append("".join(lines))
        assert patch(mobile_client, me, record["id"], content=states[-1]).status_code == 200
    for number in (1, 2, FULL_EVERY, FULL_EVERY + 1, len(states) - 1):
        assert revision(mobile_client, me, record["id"], number)["content"] == states[number - 1], number
    formats = [row.content_format for row in stored_revisions(database_url, record["id"])]
    assert formats.count(FORMAT_DELTA) > len(formats) * 0.9 and FORMAT_FULL in formats
    longest_run = max(len(run) for run in "".join("d" if f == FORMAT_DELTA else " " for f in formats).split())
    assert longest_run <= FULL_EVERY - 1


def test_diff_against_current_and_another_revision(mobile_client: TestClient, me: dict[str, str]) -> None:
    record = create(mobile_client, me, title="t", content="one\ntwo\nthree\n")
    patch(mobile_client, me, record["id"], content="one\n2\nthree\n")
    patch(mobile_client, me, record["id"], title="t2", content="one\n2\nthree\nfour\n")
    url = f"/api/v1/records/{record['id']}/revisions/1/diff"
    now = mobile_client.get(url, headers=me).json()
    assert now["unified"] == "--- revision 1\n+++ current\n@@ -1,3 +1,4 @@\n one\n-two\n+2\n three\n+four\n"
    assert now["old"] == {"revision": 1, "version": 1, "title": "t", "tags": []}
    assert now["new"]["revision"] is None and now["new"]["title"] == "t2" and now["new"]["version"] == 3
    assert [line["op"] for line in now["hunks"][0]["lines"]] == ["context", "delete", "add", "context", "add"]
    between = mobile_client.get(url, params={"against": "2"}, headers=me).json()
    assert between["unified"].endswith("-two\n+2\n three\n") and between["new"]["revision"] == 2
    same = mobile_client.get(f"/api/v1/records/{record['id']}/revisions/2/diff", params={"against": 2}, headers=me)
    assert same.json()["unified"] == "" and same.json()["hunks"] == []


def test_restore_is_a_new_version_and_a_change_in_the_sync_feed(mobile_client: TestClient, me: dict[str, str]) -> None:
    record = create(mobile_client, me, title="first", content="original\n", tags=["x"])
    patch(mobile_client, me, record["id"], title="second", content="changed\n", tags=["y"])
    _, cursor = pull(mobile_client, me)
    restored = mobile_client.post(f"/api/v1/records/{record['id']}/revisions/1/restore", headers=me)
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["title"], body["content"], body["tags"], body["version"]) == ("first", "original\n", ["x"], 3)
    assert restored.headers["etag"] == '"3"'
    changes, _ = pull(mobile_client, me, cursor)
    assert [(c["id"], c["op"], c["version"]) for c in changes] == [(record["id"], "upsert", 3)]
    # history is never rewritten: the restored-over state is a revision too
    assert [r["title"] for r in revisions_of(mobile_client, me, record["id"])["data"]] == ["second", "first"]
    stale = mobile_client.post(f"/api/v1/records/{record['id']}/revisions/1/restore", headers={**me, "If-Match": '"2"'})
    assert assert_error(stale, 409, "conflict")["record"]["version"] == 3


# ---------------------------------------------------------------- stale edits: merged or refused


def test_stale_patch_of_another_paragraph_is_merged(mobile_client: TestClient, me: dict[str, str]) -> None:
    record = create(mobile_client, me, title="Plan", content=PLAN, tags=["home"])
    rid = record["id"]
    browser = patch(mobile_client, me, rid, content=PLAN.replace("Buy milk.", "Buy oat milk."), tags=["home", "b"])
    assert browser.status_code == 200 and "merged" not in browser.json()
    phone = patch(
        mobile_client, me, rid, version=1, title="Weekend plan", content=PLAN.replace("Read a book.", "Read two books.")
    )
    assert phone.status_code == 200, phone.text
    merged = phone.json()
    assert merged["merged"] is True and merged["version"] == 3 and phone.headers["etag"] == '"3"'
    assert merged["content"] == "# Plan\n\nBuy oat milk.\n\nCall Ann.\n\nRead two books.\n"
    assert merged["title"] == "Weekend plan" and merged["tags"] == ["home", "b"]
    listed = revisions_of(mobile_client, me, rid)["data"]
    assert [(r["kind"], r["version"]) for r in listed] == [("stale_edit", 1), ("version", 2), ("version", 1)]
    assert revision(mobile_client, me, rid, listed[0]["revision"])["content"] == PLAN.replace(
        "Read a book.", "Read two books."
    )
    assert mobile_client.get(f"/api/v1/records/{rid}", headers=me).json() == {
        k: v for k, v in merged.items() if k != "merged"
    }


def test_stale_patch_of_the_same_line_is_409_with_both_sides_kept(
    mobile_client: TestClient, me: dict[str, str]
) -> None:
    record = create(mobile_client, me, title="Plan", content=PLAN)
    rid = record["id"]
    patch(mobile_client, me, rid, content=PLAN.replace("Call Ann.", "Call Ann at noon."))
    refused = patch(mobile_client, me, rid, version=1, content=PLAN.replace("Call Ann.", "Email Ann."))
    body = assert_error(refused, 409, "conflict")
    assert body["record"]["version"] == 2 and "Call Ann at noon." in body["record"]["content"]
    conflict = body["conflict"]
    assert conflict["base"]["content"] == PLAN and conflict["base"]["version"] == 1
    assert conflict["theirs"]["version"] == 2 and "Email Ann." in conflict["yours"]["content"]
    assert conflict["hunks"] == [
        {
            "field": "content",
            "base_line": 5,
            "base": "Call Ann.\n",
            "theirs": "Call Ann at noon.\n",
            "yours": "Email Ann.\n",
        }
    ]
    kept = conflict["kept"]
    assert "Call Ann at noon." in revision(mobile_client, me, rid, kept["theirs"])["content"]
    assert "Email Ann." in revision(mobile_client, me, rid, kept["yours"])["content"]
    assert mobile_client.get(f"/api/v1/records/{rid}", headers=me).json()["version"] == 2  # nothing applied
    # resolving it: the next edit at the current version keeps the kept state once, not twice
    assert (
        patch(mobile_client, me, rid, version=2, content=PLAN.replace("Call Ann.", "Email Ann at noon.")).json()[
            "version"
        ]
        == 3
    )
    states = [r for r in revisions_of(mobile_client, me, rid)["data"] if r["kind"] == "version"]
    assert [r["version"] for r in states] == [2, 1]


def test_stale_and_future_versions_that_cannot_be_merged_are_409(mobile_client: TestClient, me: dict[str, str]) -> None:
    record = create(mobile_client, me, title="v1")
    rid = record["id"]
    patch(mobile_client, me, rid, title="v2")
    patch(mobile_client, me, rid, pinned=True)
    future = assert_error(patch(mobile_client, me, rid, version=99, title="v2"), 409, "conflict")
    assert future["conflict"]["base"] is None and "newer" in future["detail"]
    assert future["conflict"]["kept"] == {"theirs": None, "yours": None}  # a version it never had keeps nothing
    huge = patch(mobile_client, me, rid, version=2**53 - 1, title="x", content="y")
    assert assert_error(huge, 409, "conflict")["conflict"]["hunks"][0]["field"] == "title"
    assert revisions_of(mobile_client, me, rid)["total_count"] == 1
    # pinned has no history: a differing stale value is a hunk, an equal one merges
    hunk = assert_error(patch(mobile_client, me, rid, version=1, pinned=False), 409, "conflict")["conflict"]["hunks"]
    assert hunk == [{"field": "pinned", "base_line": None, "base": None, "theirs": True, "yours": False}]
    assert patch(mobile_client, me, rid, version=2, pinned=True).json()["merged"] is True
    assert_error(patch(mobile_client, me, rid, version=1, title="other"), 409, "conflict")  # both changed the title


def test_sync_push_merges_a_stale_upsert_and_reports_conflicts(mobile_client: TestClient, me: dict[str, str]) -> None:
    record = create(mobile_client, me, title="Plan", content=PLAN)
    rid = record["id"]
    patch(mobile_client, me, rid, content=PLAN.replace("Buy milk.", "Buy oat milk."))
    pushed = mobile_client.post(
        "/api/v1/sync/push",
        json={
            "changes": [
                {
                    "id": rid,
                    "op": "upsert",
                    "base_version": 1,
                    "fields": {"content": PLAN.replace("# Plan", "# Plans")},
                },
                {
                    "id": rid,
                    "op": "upsert",
                    "base_version": 1,
                    "fields": {"content": PLAN.replace("Buy milk.", "Buy tea.")},
                },
            ]
        },
        headers={**me, "X-Device": "phone"},
    ).json()["results"]
    assert [r["status"] for r in pushed] == ["merged", "conflict"]
    assert pushed[0]["record"]["content"].startswith("# Plans\n\nBuy oat milk.") and "conflict" not in pushed[0]
    assert pushed[1]["record"]["version"] == 3 and pushed[1]["conflict"]["hunks"][0]["yours"] == "Buy tea.\n"
    kept = revision(mobile_client, me, rid, pushed[1]["conflict"]["kept"]["yours"])
    assert kept["kind"] == "stale_edit" and kept["device"] == "phone"


# ---------------------------------------------------------------- trash


def test_trash_lists_deleted_records_and_undelete_brings_them_back(
    mobile_client: TestClient, me: dict[str, str]
) -> None:
    record = create(mobile_client, me, title="Keep me", content="precious\n", tags=["t"])
    kept = create(mobile_client, me, title="alive")
    assert mobile_client.delete(f"/api/v1/records/{record['id']}", headers=me).status_code == 204
    trash = mobile_client.get("/api/v1/records/trash", headers=me).json()
    assert [(t["id"], t["title"], t["tags"]) for t in trash["data"]] == [(record["id"], "Keep me", ["t"])]
    assert trash["total_count"] == 1 and kept["id"] not in {t["id"] for t in trash["data"]}
    entry = trash["data"][0]
    assert entry["revision"] == 1 and entry["purge_after"] > entry["deleted_at"]
    # the history of a record in the trash stays readable
    assert revision(mobile_client, me, record["id"], 1)["content"] == "precious\n"
    _, cursor = pull(mobile_client, me)
    back = mobile_client.post(f"/api/v1/records/{record['id']}/restore", headers=me)
    assert back.status_code == 200, back.text
    assert (back.json()["title"], back.json()["content"], back.json()["tags"]) == ("Keep me", "precious\n", ["t"])
    assert back.json()["deleted_at"] is None and back.json()["version"] == 3
    changes, _ = pull(mobile_client, me, cursor)
    assert [(c["id"], c["op"]) for c in changes] == [(record["id"], "upsert")]
    assert mobile_client.get("/api/v1/records/trash", headers=me).json()["data"] == []
    again = mobile_client.post(f"/api/v1/records/{record['id']}/restore", headers=me)
    assert again.status_code == 200 and again.json()["version"] == 3  # a repeated undelete changes nothing
    found = mobile_client.get("/api/v1/records", params={"tag": "t"}, headers=me).json()["data"]
    assert [r["id"] for r in found] == [record["id"]]


def test_trash_path_is_not_a_record_id(mobile_client: TestClient, me: dict[str, str]) -> None:
    assert_error(
        mobile_client.patch("/api/v1/records/trash", json={"title": "x"}, headers=me), 405, "method_not_allowed"
    )
    assert mobile_client.delete("/api/v1/records/trash", headers=me).headers["allow"] == "GET"
    assert_error(mobile_client.get("/api/v1/records/trash/revisions", headers=me), 404, "not_found")


# ---------------------------------------------------------------- someone else's, and hostile input


def test_another_users_revisions_trash_and_restores_are_404(
    mobile_client: TestClient, me: dict[str, str], other: dict[str, str]
) -> None:
    record = create(mobile_client, me, title="mine", content="secret\n")
    patch(mobile_client, me, record["id"], content="more secret\n")
    gone = create(mobile_client, me, title="deleted")
    mobile_client.delete(f"/api/v1/records/{gone['id']}", headers=me)
    base = f"/api/v1/records/{record['id']}"
    for method, path in [
        ("GET", f"{base}/revisions"),
        ("GET", f"{base}/revisions/1"),
        ("GET", f"{base}/revisions/1/diff"),
        ("POST", f"{base}/revisions/1/restore"),
        ("POST", f"/api/v1/records/{gone['id']}/restore"),
        ("GET", f"/api/v1/records/{gone['id']}/revisions"),
    ]:
        assert_error(mobile_client.request(method, path, headers=other), 404, "not_found")
    assert mobile_client.get("/api/v1/records/trash", headers=other).json()["total_count"] == 0
    assert mobile_client.get(f"{base}", headers=me).json()["content"] == "more secret\n"  # untouched


@pytest.mark.parametrize(
    "rev", ["0", "-1", "abc", "1.0", "99", "9" * 17, "99999999999999999999999999", "%2e%2e", ".%2e", "1e3", "٣"]
)
def test_bogus_revision_numbers_are_404(mobile_client: TestClient, me: dict[str, str], rev: str) -> None:
    record = create(mobile_client, me, title="t")
    patch(mobile_client, me, record["id"], title="u")
    base = f"/api/v1/records/{record['id']}/revisions/{rev}"
    for method, path in [("GET", base), ("GET", f"{base}/diff"), ("POST", f"{base}/restore")]:
        response = mobile_client.request(method, path, headers=me)
        assert response.status_code == 404, (rev, path, response.text)


@pytest.mark.parametrize("against", ["garbage", "", "-1", "1;drop", "current ", "9" * 17, "CURRENT"])
def test_against_garbage_is_422(mobile_client: TestClient, me: dict[str, str], against: str) -> None:
    record = create(mobile_client, me, title="t")
    patch(mobile_client, me, record["id"], title="u")
    response = mobile_client.get(
        f"/api/v1/records/{record['id']}/revisions/1/diff", params={"against": against}, headers=me
    )
    assert_error(response, 422, "validation_error")
    missing = mobile_client.get(f"/api/v1/records/{record['id']}/revisions/1/diff?against=42", headers=me)
    assert_error(missing, 404, "not_found")


def test_encoded_dot_segments_and_non_uuid_ids_never_reach_another_record(
    mobile_client: TestClient, me: dict[str, str]
) -> None:
    # (the test client resolves plain ``..`` itself; tests/test_e2e_history.py sends them raw)
    record = create(mobile_client, me, title="t")
    for method, path in [
        ("POST", f"/api/v1/records/{record['id']}/revisions/%2e%2e/restore"),
        ("GET", f"/api/v1/records/{record['id']}/revisions/%2E%2E/diff"),
        ("GET", "/api/v1/records/not-a-uuid/revisions"),
        ("GET", "/api/v1/records/%2e%2e/revisions/1"),
        ("POST", "/api/v1/records/%2e%2e/restore"),
    ]:
        assert_error(mobile_client.request(method, path, headers=me), 404, "not_found")


# ---------------------------------------------------------------- purge


def test_purge_removes_old_tombstones_and_older_cursors_must_resync(
    mobile_client: TestClient, me: dict[str, str], database_url: str
) -> None:
    doomed = create(mobile_client, me, title="doomed", content="x\n")
    survivor = create(mobile_client, me, title="survivor")
    _, before = pull(mobile_client, me)
    mobile_client.delete(f"/api/v1/records/{doomed['id']}", headers=me)
    _, after = pull(mobile_client, me)
    policy = HistoryPolicy(revisions_keep=100, revisions_days=30, trash_days=30, batch=2)

    async def _purge(at_days: float) -> Any:
        db = Database(database_url)
        try:
            return await purge_expired(db, policy, utcnow() + timedelta(days=at_days))
        finally:
            await db.dispose()

    assert asyncio.run(_purge(29)).tombstones == 0  # still inside the trash window
    assert mobile_client.get("/api/v1/records/trash", headers=me).json()["total_count"] == 1
    assert asyncio.run(_purge(31)).tombstones >= 1
    assert stored_revisions(database_url, doomed["id"]) == []
    assert_error(mobile_client.post(f"/api/v1/records/{doomed['id']}/restore", headers=me), 404, "not_found")
    stale = mobile_client.get("/api/v1/sync/changes", params={"cursor": before}, headers=me)
    assert assert_error(stale, 400, "invalid_cursor")["detail"].startswith("Invalid sync cursor")
    assert pull(mobile_client, me, after)[0] == []  # a cursor that saw the delete goes on
    everything, _ = pull(mobile_client, me)
    assert {c["id"] for c in everything} == {survivor["id"]}


def test_purge_trims_revisions_past_both_limits(
    mobile_client: TestClient, me: dict[str, str], database_url: str
) -> None:
    record = create(mobile_client, me, title="t0", content="0\n")
    for n in range(1, 8):
        patch(mobile_client, me, record["id"], title=f"t{n}", content=f"{n}\n")
    policy = HistoryPolicy(revisions_keep=3, revisions_days=30, trash_days=30, batch=1)

    async def _purge(at_days: float) -> Any:
        db = Database(database_url)
        try:
            return await purge_expired(db, policy, utcnow() + timedelta(days=at_days))
        finally:
            await db.dispose()

    asyncio.run(_purge(1))  # all younger than 30 days: all kept
    assert revisions_of(mobile_client, me, record["id"])["total_count"] == 7
    asyncio.run(_purge(31))
    listed = revisions_of(mobile_client, me, record["id"])["data"]
    assert [r["revision"] for r in listed] == [7, 6, 5]
    # the newest kept states still read back (their deltas lead up to the record itself)
    assert [revision(mobile_client, me, record["id"], n)["content"] for n in (5, 6, 7)] == ["4\n", "5\n", "6\n"]
