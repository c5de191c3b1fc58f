"""Two replicas on one database: leases keep every task worked exactly once, and the heartbeat
keeps a task that outlives its lease period with its worker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from common.models.image import GenerationResult, Image
from image_service.tests.conftest import auth, wait_for_task


def replica(image_app_factory: Callable[..., Any], fake_llm_url: str, storage_dir: str, name: str) -> TestClient:
    return TestClient(
        image_app_factory(
            image_storage_dir=storage_dir,
            llm_base_url=fake_llm_url,
            llm_api_key="test-key",
            generation_max_tasks=1,
            generation_poll_seconds=0.1,
            generation_lease_seconds=0.9,  # shorter than each call: only the heartbeat keeps the claim
            generation_worker_id=f"{name}-{uuid.uuid4().hex[:6]}",
        )
    )


def test_two_replicas_work_each_task_once(
    image_app_factory: Callable[..., Any], fake_llm_url: str, issue_token: Callable[..., str], tmp_path: Any
) -> None:
    owner_id = str(uuid.uuid4())
    token = issue_token(owner_id)
    storage_dir = str(tmp_path / "shared-images")
    with (
        replica(image_app_factory, fake_llm_url, storage_dir, "a") as first,
        replica(image_app_factory, fake_llm_url, storage_dir, "b") as second,
    ):
        task_ids = []
        for i in range(4):
            client = first if i % 2 else second
            response = client.post(
                "/api/v1/generations", headers=auth(token), json={"prompt": f"tile {i} [[slow:1.5]]", "n": 2}
            )
            assert response.status_code == 202
            task_ids.append(response.json()["id"])
        finished = [wait_for_task(first, token, task_id) for task_id in task_ids]
        assert [t["status"] for t in finished] == ["succeeded"] * 4

        async def _counts() -> tuple[int, int]:
            async with first.app_state["db"].session() as session:  # type: ignore[attr-defined]
                images = await session.scalar(
                    select(func.count()).select_from(Image).where(Image.generation_task_id.in_(task_ids))
                )
                retried = await session.scalar(
                    select(func.count())
                    .select_from(GenerationResult)
                    .where(GenerationResult.task_id.in_(task_ids), GenerationResult.attempts != 1)
                )
                return int(images or 0), int(retried or 0)

        images, retried = first.portal.call(_counts)  # type: ignore[union-attr]
        assert images == 8  # one image per result: no result was made twice
        assert retried == 0  # and no call was repeated by a second worker
