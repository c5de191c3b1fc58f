"""Generation tasks against the project's OpenAI-protocol upstream (devtools.fake_llm) over HTTP."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from common.database import utcnow
from common.models.image import GenerationResult, GenerationTask
from image_service.tests.conftest import auth, wait_for_task


@pytest.fixture(scope="module")
def gen_client(image_app_factory: Callable[..., Any], fake_llm_url: str) -> Iterator[TestClient]:
    app = image_app_factory(
        llm_base_url=fake_llm_url,
        llm_api_key="test-key",
        generation_backoff_seconds=0.05,
        generation_poll_seconds=0.2,
        generation_lease_seconds=1.5,
        generation_worker_id=f"test-worker-{uuid.uuid4().hex[:8]}",
    )
    with TestClient(app) as c:
        yield c


def create(client: TestClient, token: str, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/generations", headers=auth(token), json=body)
    assert response.status_code == 202, response.text
    return response.json()


def test_one_failing_result_ends_partial_with_the_other_images(
    gen_client: TestClient, issue_token: Callable[..., str]
) -> None:
    token = issue_token()
    task = create(gen_client, token, prompt="a lighthouse at dusk [[fail-result:1]]", n=3, size="64x48")
    assert task["status"] == "pending" and task["n"] == 3 and len(task["results"]) == 3
    done = wait_for_task(gen_client, token, task["id"])
    assert done["status"] == "partial", done
    assert done["progress"] == 100
    by_index = {r["index"]: r for r in done["results"]}
    assert by_index[1]["status"] == "failed" and by_index[1]["image_id"] is None and by_index[1]["error"]
    assert "attempt 3 of 3" in by_index[1]["error"]  # retried before giving up
    made = [by_index[i]["image_id"] for i in (0, 2)]
    assert all(made) and {by_index[i]["status"] for i in (0, 2)} == {"succeeded"}

    # Generated images are ordinary images of the owner.
    listed = {i["id"]: i for i in gen_client.get("/api/v1/images", headers=auth(token)).json()["data"]}
    assert set(made) <= set(listed)
    for image_id in made:
        assert (listed[image_id]["width"], listed[image_id]["height"]) == (64, 48)
        content = gen_client.get(listed[image_id]["url"], headers=auth(token))
        assert content.status_code == 200 and Image.open(io.BytesIO(content.content)).size == (64, 48)
    assert gen_client.get(f"/api/v1/generations/{task['id']}", headers=auth(issue_token())).status_code == 404


def test_results_are_rated_one_to_five(gen_client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    task = create(gen_client, token, prompt="two cats [[fail-result:1]]", n=2, size="32x32")
    done = wait_for_task(gen_client, token, task["id"])
    assert done["status"] == "partial"
    url = f"/api/v1/generations/{task['id']}/results"
    rated = gen_client.put(f"{url}/0/rating", headers=auth(token), json={"rating": 5})
    assert rated.status_code == 200 and rated.json()["rating"] == 5
    assert gen_client.get(f"/api/v1/generations/{task['id']}", headers=auth(token)).json()["results"][0]["rating"] == 5
    assert gen_client.put(f"{url}/0/rating", headers=auth(token), json={"rating": 6}).status_code == 422
    assert gen_client.put(f"{url}/0/rating", headers=auth(token), json={"rating": 0}).status_code == 422
    assert gen_client.put(f"{url}/1/rating", headers=auth(token), json={"rating": 3}).status_code == 409
    assert gen_client.put(f"{url}/3/rating", headers=auth(token), json={"rating": 3}).status_code == 404
    assert gen_client.put(f"{url}/0/rating", headers=auth(issue_token()), json={"rating": 1}).status_code == 404
    page = gen_client.get("/api/v1/generations", headers=auth(token)).json()
    assert page["total_count"] == 1 and page["data"][0]["id"] == task["id"]


def test_cancel_stops_pending_results(gen_client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    task = create(gen_client, token, prompt="slow painting [[slow:3]]", n=4, size="16x16")
    cancelled = gen_client.post(f"/api/v1/generations/{task['id']}/cancel", headers=auth(token))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    done = wait_for_task(gen_client, token, task["id"])
    assert done["status"] == "cancelled"
    assert {r["status"] for r in done["results"]} <= {"cancelled", "succeeded"}
    again = gen_client.post(f"/api/v1/generations/{task['id']}/cancel", headers=auth(token))
    assert again.status_code == 200
    assert gen_client.post(f"/api/v1/generations/{task['id']}/cancel", headers=auth(issue_token())).status_code == 404


def test_cancel_of_a_finished_task_is_409(gen_client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    task = create(gen_client, token, prompt="a quick sketch", n=1, size="16x16")
    assert wait_for_task(gen_client, token, task["id"])["status"] == "succeeded"
    response = gen_client.post(f"/api/v1/generations/{task['id']}/cancel", headers=auth(token))
    assert response.status_code == 409 and response.json()["code"] == "conflict"


def _insert_task(client: TestClient, owner_id: str, lease_owner: str, lease_expires_at: Any) -> str:
    task_id = str(uuid.uuid4())

    async def _insert() -> None:
        async with client.app_state["db"].session() as session:  # type: ignore[attr-defined]
            session.add(
                GenerationTask(
                    id=task_id,
                    owner_id=owner_id,
                    prompt="left behind",
                    n=2,
                    size="16x16",
                    status="running",
                    progress=0,
                    lease_owner=lease_owner,
                    lease_expires_at=lease_expires_at,
                )
            )
            await session.flush()
            session.add_all(
                [
                    GenerationResult(task_id=task_id, index=0, status="running", attempts=1),
                    GenerationResult(task_id=task_id, index=1, status="pending", attempts=0),
                ]
            )
            await session.commit()

    client.portal.call(_insert)  # type: ignore[union-attr]
    return task_id


def test_a_dead_workers_task_is_resumed_and_a_live_lease_is_respected(
    gen_client: TestClient, issue_token: Callable[..., str]
) -> None:
    owner_id = str(uuid.uuid4())
    token = issue_token(owner_id)
    dead = _insert_task(gen_client, owner_id, "crashed-replica:8004", utcnow() - timedelta(seconds=5))
    alive = _insert_task(gen_client, owner_id, "busy-replica:8004", utcnow() + timedelta(minutes=10))

    resumed = wait_for_task(gen_client, token, dead)
    assert resumed["status"] == "succeeded" and all(r["image_id"] for r in resumed["results"])

    async def _lease_of_alive() -> tuple[str | None, str]:
        async with gen_client.app_state["db"].session() as session:  # type: ignore[attr-defined]
            row = (await session.execute(select(GenerationTask).where(GenerationTask.id == alive))).scalar_one()
            return row.lease_owner, row.status

    assert gen_client.portal.call(_lease_of_alive) == ("busy-replica:8004", "running")  # type: ignore[union-attr]


def test_invalid_generation_requests(gen_client: TestClient, issue_token: Callable[..., str]) -> None:
    token = issue_token()
    for body in ({"prompt": "x", "n": 5}, {"prompt": "x", "n": 0}, {"prompt": ""}, {"prompt": "x", "size": "huge"}):
        response = gen_client.post("/api/v1/generations", headers=auth(token), json=body)
        assert response.status_code == 422 and response.json()["code"] == "validation_error"
    assert gen_client.get("/api/v1/generations/not-a-task", headers=auth(token)).status_code == 404
    assert gen_client.post("/api/v1/generations", json={"prompt": "x"}).status_code == 401


def test_without_a_provider_generation_answers_503(client: TestClient, issue_token: Callable[..., str]) -> None:
    response = client.post("/api/v1/generations", headers=auth(issue_token()), json={"prompt": "x", "n": 1})
    assert response.status_code == 503 and "LLM_API_KEY" in response.json()["detail"]


def test_a_refused_request_fails_at_once_and_a_rate_limit_is_retried(
    gen_client: TestClient, issue_token: Callable[..., str]
) -> None:
    token = issue_token()
    refused = create(gen_client, token, prompt="too big", n=1, size="9999x9999")  # the provider answers 400
    rate_limited = create(gen_client, token, prompt="busy [[fail:429]]", n=1, size="16x16")
    first = wait_for_task(gen_client, token, refused["id"])
    assert first["status"] == "failed" and "attempt 1 of 3" in first["results"][0]["error"]
    second = wait_for_task(gen_client, token, rate_limited["id"])
    assert second["status"] == "failed" and "attempt 3 of 3" in second["results"][0]["error"]


def test_too_many_unfinished_tasks_answer_429(
    image_app_factory: Callable[..., Any], fake_llm_url: str, issue_token: Callable[..., str], tmp_path: Any
) -> None:
    app = image_app_factory(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}",  # no other worker sees these tasks
        llm_base_url=fake_llm_url,
        llm_api_key="test-key",
        generation_workers_enabled=False,
        generation_max_open_per_user=2,
    )
    token = issue_token()
    with TestClient(app) as queue_only:  # no worker: tasks stay pending
        for _ in range(2):
            assert queue_only.post("/api/v1/generations", headers=auth(token), json={"prompt": "x"}).status_code == 202
        refused = queue_only.post("/api/v1/generations", headers=auth(token), json={"prompt": "x"})
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) > 0
        other_user = queue_only.post("/api/v1/generations", headers=auth(issue_token()), json={"prompt": "x"})
        assert other_user.status_code == 202
