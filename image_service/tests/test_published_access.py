"""Anyone may read an image while it is attached to a published record of its owner (the shared
``records`` table, written here directly as mobile_service would)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from common.database import utcnow
from common.models.record import Record
from image_service.tests.conftest import add_record, auth, png_bytes, run_db, upload


def set_record(client: TestClient, record_id: str, **values: Any) -> None:
    async def _set(session: Any) -> None:
        await session.execute(update(Record).where(Record.id == record_id).values(**values))

    run_db(client, _set)


def test_published_image_is_readable_without_a_token_until_unpublished(
    client: TestClient, issue_token: Callable[..., str]
) -> None:
    owner_id = str(uuid.uuid4())
    token = issue_token(owner_id)
    body = upload(client, token, png_bytes((60, 40), (200, 1, 1)), "pub.png").json()
    assert client.get(body["url"]).status_code == 404

    record_id = add_record(client, owner_id, ["something-else", body["id"]])
    public = client.get(body["url"])
    assert public.status_code == 200 and public.headers["content-type"] == "image/png"
    assert public.headers["cache-control"].startswith("public")
    assert client.get(body["thumbnail_url"]).status_code == 200
    stranger = client.get(body["url"], headers=auth(issue_token()))
    assert stranger.status_code == 200

    set_record(client, record_id, visibility="private", slug=None)
    assert client.get(body["url"]).status_code == 404
    assert client.get(body["thumbnail_url"]).status_code == 404
    owner_view = client.get(body["url"], headers=auth(token))
    assert owner_view.status_code == 200 and owner_view.headers["cache-control"].startswith("private")

    set_record(client, record_id, visibility="public", slug=uuid.uuid4().hex)
    assert client.get(body["url"]).status_code == 200
    set_record(client, record_id, deleted_at=utcnow())
    assert client.get(body["url"]).status_code == 404


def test_someone_else_publishing_my_image_id_does_not_expose_it(
    client: TestClient, issue_token: Callable[..., str]
) -> None:
    owner_id = str(uuid.uuid4())
    body = upload(client, issue_token(owner_id), png_bytes((33, 33), (3, 200, 3)), "mine.png").json()
    add_record(client, str(uuid.uuid4()), [body["id"]])  # a stranger's public record naming my image
    assert client.get(body["url"]).status_code == 404


def test_record_id_on_upload_must_be_the_callers_record(client: TestClient, issue_token: Callable[..., str]) -> None:
    owner_id = str(uuid.uuid4())
    token = issue_token(owner_id)
    mine = add_record(client, owner_id, [], visibility="private")
    theirs = add_record(client, str(uuid.uuid4()), [], visibility="private")
    ok = upload(client, token, png_bytes((21, 21), (5, 5, 5)), "r.png", record_id=mine)
    assert ok.status_code == 201
    refused = upload(client, token, png_bytes((22, 22), (5, 5, 5)), "r.png", record_id=theirs)
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    hostile = upload(client, token, png_bytes((23, 23), (5, 5, 5)), "r.png", record_id="%' OR 1=1 --")
    assert hostile.status_code == 404
