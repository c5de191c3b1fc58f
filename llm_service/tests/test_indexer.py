"""llm_service's record indexer in-process, against the project's own upstream: records written
to the shared tables (as mobile_service's write path leaves them: pending in ``record_index``) are
embedded in the background; a change of ``LLM_EMBEDDING_MODEL`` re-embeds them lazily, and search
uses only vectors of the current model meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from common.database import Database
from common.models.record import Record
from common.record_index import store
from tests.waiting import wait_until


async def _write_records(database_url: str, owner: str, texts: list[tuple[str, str]]) -> list[str]:
    db = Database(database_url)
    ids = []
    try:
        await db.create_all()
        async with db.session() as session:
            for n, (title, content) in enumerate(texts):
                record = Record(id=str(uuid.uuid4()), owner_id=owner, title=title, content=content, change_seq=n + 1)
                session.add(record)
                await session.flush()
                await store.mark_pending(session, record)
                ids.append(record.id)
            await session.commit()
    finally:
        await db.dispose()
    return ids


def _status(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get("/api/v1/index/status", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_new_embedding_model_re_embeds_every_record_lazily(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]], database_url: str
) -> None:
    owner = str(uuid.uuid4())
    me = auth_headers(owner)
    texts = [("Bees", "the beekeeper collects honey"), ("Bikes", "a new chain for the bicycle")]
    ids = asyncio.run(_write_records(database_url, owner, texts))
    with TestClient(llm_app_factory(index_poll_seconds=0.1, llm_embedding_model="model-a")) as client:
        assert wait_until(lambda: _status(client, me)["indexed"] == 2, 30), _status(client, me)
        first = client.post("/api/v1/index/search", json={"query": "honey"}, headers=me).json()
        assert first["model"] == "model-a" and [h["record_id"] for h in first["data"]] == [ids[0]]
    with TestClient(llm_app_factory(index_poll_seconds=0.1, llm_embedding_model="model-b")) as client:
        # the status counts against the current model; search never mixes the two models' vectors
        assert wait_until(lambda: _status(client, me)["indexed"] == 2, 30), _status(client, me)
        status = _status(client, me)
        assert status["model"] == "model-b" and status["pending"] == 0
        second = client.post("/api/v1/index/search", json={"query": "honey"}, headers=me).json()
        assert second["model"] == "model-b" and [h["record_id"] for h in second["data"]] == [ids[0]]
        usage = client.get("/api/v1/usage", headers=me).json()["by_day"]
        assert {row["model"] for row in usage} >= {"model-a", "model-b"}
