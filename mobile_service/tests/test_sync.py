"""Sync: the change feed, the cursor, the batch push, and a seeded-random schedule of concurrent
writers against a paging reader that must end with exactly the server's final state."""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from common.config import Settings
from common.database import Database
from common.errors import AppError
from mobile_service.app import records, sync
from mobile_service.app.schemas import RecordCreate

Headers = Callable[[str], dict[str, str]]


def pull_all(
    client: TestClient, headers: dict[str, str], cursor: str | None = None, limit: int = 2
) -> tuple[list[dict[str, Any]], str]:
    changes: list[dict[str, Any]] = []
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/sync/changes", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        changes += body["changes"]
        cursor = body["cursor"]
        if not body["has_more"]:
            return changes, cursor


def test_second_device_receives_everything_including_tombstones(
    mobile_client: TestClient, auth_headers: Headers
) -> None:
    user = auth_headers(str(uuid.uuid4()))
    ids = [mobile_client.post("/api/v1/records", json={"title": f"n{i}"}, headers=user).json()["id"] for i in range(5)]
    mobile_client.patch(f"/api/v1/records/{ids[0]}", json={"title": "n0 edited"}, headers=user)
    mobile_client.delete(f"/api/v1/records/{ids[1]}", headers=user)

    changes, cursor = pull_all(mobile_client, user)
    assert [c["id"] for c in changes] == [ids[2], ids[3], ids[4], ids[0], ids[1]]  # oldest change first
    assert changes[-1]["op"] == "delete" and changes[-1]["record"]["deleted_at"] is not None
    assert changes[3]["record"]["title"] == "n0 edited" and changes[3]["version"] == 2

    nothing, same = pull_all(mobile_client, user, cursor)
    assert nothing == [] and same == cursor
    mobile_client.patch(f"/api/v1/records/{ids[2]}", json={"pinned": True}, headers=user)
    later, _ = pull_all(mobile_client, user, cursor)
    assert [(c["id"], c["op"], c["record"]["pinned"]) for c in later] == [(ids[2], "upsert", True)]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        base64.urlsafe_b64encode(b"v1.3.deadbeef").decode(),
        base64.urlsafe_b64encode(b"v1.-1.x").decode(),
        "A" * 400,
    ],
)
def test_malformed_cursor_is_400_invalid_cursor(mobile_client: TestClient, auth_headers: Headers, cursor: str) -> None:
    response = mobile_client.get(
        "/api/v1/sync/changes", params={"cursor": cursor}, headers=auth_headers(str(uuid.uuid4()))
    )
    assert response.status_code in (400, 422)
    body = response.json()
    if response.status_code == 400:
        assert body["code"] == "invalid_cursor" and "resync" in body["detail"]


def test_another_users_cursor_is_refused(mobile_client: TestClient, auth_headers: Headers) -> None:
    alice, bob = auth_headers(str(uuid.uuid4())), auth_headers(str(uuid.uuid4()))
    mobile_client.post("/api/v1/records", json={"title": "a"}, headers=alice)
    _, alice_cursor = pull_all(mobile_client, alice)
    response = mobile_client.get("/api/v1/sync/changes", params={"cursor": alice_cursor}, headers=bob)
    assert response.status_code == 400 and response.json()["code"] == "invalid_cursor"
    assert mobile_client.get("/api/v1/sync/changes?limit=1000", headers=bob).status_code == 422


def test_push_reports_each_item_and_one_bad_item_fails_no_other(
    mobile_client: TestClient, auth_headers: Headers
) -> None:
    user, other = auth_headers(str(uuid.uuid4())), auth_headers(str(uuid.uuid4()))
    existing = mobile_client.post("/api/v1/records", json={"title": "base"}, headers=user).json()
    mobile_client.patch(f"/api/v1/records/{existing['id']}", json={"title": "moved on"}, headers=user)
    to_delete = mobile_client.post("/api/v1/records", json={"title": "bye"}, headers=user).json()
    theirs = mobile_client.post("/api/v1/records", json={"title": "not yours"}, headers=other).json()
    new_id = str(uuid.uuid4())
    batch = [
        {"id": new_id, "op": "upsert", "base_version": None, "fields": {"title": "made offline", "tags": ["A"]}},
        {"id": existing["id"], "op": "upsert", "base_version": 1, "fields": {"title": "stale edit"}},
        {"id": to_delete["id"], "op": "delete", "base_version": 1, "fields": {}},
        {"id": "not-a-uuid", "op": "upsert", "fields": {}},
        {"id": str(uuid.uuid4()), "op": "upsert", "fields": {"tags": [f"t{i}" for i in range(21)]}},
        {"id": theirs["id"], "op": "delete", "base_version": 1},
        {"id": str(uuid.uuid4()), "op": "explode"},
        "not an object",
    ]
    response = mobile_client.post("/api/v1/sync/push", json={"changes": batch}, headers=user)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["applied", "conflict", "applied"] + ["error"] * 5
    assert results[0]["record"]["tags"] == ["a"] and results[0]["record"]["version"] == 1
    assert results[1]["record"]["title"] == "moved on" and results[1]["record"]["version"] == 2
    assert results[2]["record"]["deleted_at"] is not None
    assert results[5]["record"] is None
    assert mobile_client.get(f"/api/v1/records/{theirs['id']}", headers=other).status_code == 200
    # The same batch again: the create is idempotent, the delete of a tombstone is a no-op.
    again = mobile_client.post("/api/v1/sync/push", json={"changes": batch[:3]}, headers=user).json()["results"]
    assert [r["status"] for r in again] == ["applied", "conflict", "applied"]
    fresh = mobile_client.post(
        "/api/v1/sync/push",
        json={"changes": [{"id": existing["id"], "op": "upsert", "base_version": 2, "fields": {"title": "merged"}}]},
        headers=user,
    ).json()["results"][0]
    assert fresh["status"] == "applied" and fresh["record"]["version"] == 3 and fresh["record"]["title"] == "merged"
    assert mobile_client.post("/api/v1/sync/push", json={"changes": "nope"}, headers=user).status_code == 422
    too_many = mobile_client.post("/api/v1/sync/push", json={"changes": [{}] * 101}, headers=user)
    assert too_many.status_code == 413 and too_many.json()["code"] == "payload_too_large"


# ---------------------------------------------------------------- property: concurrent writers, paging reader


async def _writer(db: Database, owner: str, rng: random.Random, ids: list[str], ops: int) -> None:
    for _ in range(ops):
        action = rng.random()
        async with db.session() as session:
            try:
                if action < 0.35 or not ids:
                    record_id = str(uuid.uuid4())
                    ids.append(record_id)
                    await records.create_record(
                        session, owner, RecordCreate(id=uuid.UUID(record_id), title=record_id[:8])
                    )
                elif action < 0.8:
                    changes = {"title": f"t{rng.randrange(10**6)}", "pinned": rng.random() < 0.5}
                    await records.update_record(session, owner, rng.choice(ids), changes, None)
                else:
                    await records.delete_record(session, owner, rng.choice(ids))
            except AppError as exc:  # updating something another writer deleted: a legal outcome
                assert exc.status_code == 404
        await asyncio.sleep(0)


async def _pull(
    db: Database, secret: str, owner: str, cursor: str | None, state: dict[str, dict[str, Any]], limit: int
) -> str | None:
    async with db.session() as session:
        page = await sync.changes(session, secret, owner, cursor, limit)
    for change in page.changes:
        state[change.id] = change.record.model_dump()
    return page.cursor


@pytest.mark.parametrize("seed", range(6))
async def test_paging_reader_sees_every_final_state_and_deletion(database_url: str, seed: int) -> None:
    secret = Settings.model_fields["secret_key"].default
    rng = random.Random(seed)
    owner = str(uuid.uuid4())
    # Two engines on one database behave like two service processes writing at once.
    writers_db, other_db, reader_db = Database(database_url), Database(database_url), Database(database_url)
    try:
        await writers_db.create_all()
        ids: list[str] = []
        writers = [
            asyncio.create_task(_writer(db, owner, random.Random(rng.random()), ids, 25))
            for db in (writers_db, other_db, writers_db, other_db)
        ]
        state: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while not all(w.done() for w in writers):
            cursor = await _pull(reader_db, secret, owner, cursor, state, rng.randint(1, 4))
            await asyncio.sleep(0)
        await asyncio.gather(*writers)
        while True:  # drain what is left
            before = cursor
            cursor = await _pull(reader_db, secret, owner, cursor, state, 3)
            if cursor == before:
                break

        async with reader_db.session() as session:
            server = {r.id: r.model_dump() for r in [records.read(row) for row in await _all_rows(session, owner)]}
        assert state == server
        assert any(r["deleted_at"] is not None for r in server.values())
    finally:
        for db in (writers_db, other_db, reader_db):
            await db.dispose()


async def _all_rows(session: Any, owner: str) -> list[Any]:
    from sqlalchemy import select

    from common.models.record import Record

    return list((await session.execute(select(Record).where(Record.owner_id == owner))).scalars())
