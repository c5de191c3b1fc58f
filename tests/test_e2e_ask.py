"""End to end through the launcher: "Ask my records" (docs/api.md §15). Records written through
mobile_service (the mobile app's one base URL) are indexed in the background by llm_service with
the canned upstream's deterministic embeddings; search by meaning, related records and answers
that cite the caller's own records, for that caller only; failures of the embedding provider, and a
kill -9 of the indexing process mid-backlog."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from common.database import Database
from tests.accounts import register_and_login
from tests.auth import bearer
from tests.sse import sse_events
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

INDEX_ENV = {
    "LLM_API_KEY": "",
    "LLM_BASE_URL": "",
    "LLM_MAX_RETRIES": "0",
    "INDEX_POLL_SECONDS": "0.2",
    "INDEX_RETRY_BASE_SECONDS": "0.2",
    "INDEX_MAX_ATTEMPTS": "2",
    "INDEX_FAILED_RETRY_SECONDS": "1",
    "INDEX_LEASE_SECONDS": "5",
}


@pytest.fixture(scope="module")
def suite(launch_suite: Callable[..., Any]) -> Any:
    return launch_suite("user_service", "mobile_service", "llm_service", env=INDEX_ENV)


@pytest.fixture(scope="module")
def api(suite: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=suite.url("mobile_service"), timeout=30) as client:
        yield client


def new_user(suite: Any) -> dict[str, str]:
    return bearer(register_and_login(suite.url("user_service"))["access_token"])


def create(api: httpx.Client, me: dict[str, str], title: str, content: str, **extra: Any) -> dict[str, Any]:
    response = api.post("/api/v1/records", json={"title": title, "content": content, **extra}, headers=me)
    assert response.status_code == 201, response.text
    return response.json()


def status_of(api: httpx.Client, me: dict[str, str]) -> dict[str, Any]:
    response = api.get("/api/v1/index/status", headers=me)
    assert response.status_code == 200, response.text
    return response.json()


def wait_indexed(api: httpx.Client, me: dict[str, str], timeout: float = 30.0) -> dict[str, Any]:
    assert wait_until(lambda: status_of(api, me)["pending"] == 0, timeout), status_of(api, me)
    return status_of(api, me)


def search(api: httpx.Client, me: dict[str, str], q: str, mode: str, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/v1/records", params={"q": q, "mode": mode, **params}, headers=me)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def ask(api: httpx.Client, me: dict[str, str], question: str, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/ask", json={"question": question, **body}, headers=me)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def library(suite: Any, api: httpx.Client) -> dict[str, Any]:
    """A user with three records, and another user whose record is nearly the same as one of them."""
    me, other = new_user(suite), new_user(suite)
    coffee = create(api, me, "Friday shopping", "I buy espresso beans from the farmers market on Fridays.")
    car = create(api, me, "Garage visit", "The mechanic replaced the front brakes and the oil filter.")
    trip = create(api, me, "Holiday", "Flight to Lisbon booked for May; the hotel is near the river.")
    theirs = create(api, other, "Friday shopping", "I buy espresso beans from the farmers market on Fridays too.")
    return {"me": me, "other": other, "coffee": coffee, "car": car, "trip": trip, "theirs": theirs}


def test_every_record_is_indexed_within_seconds_and_status_says_so(api: httpx.Client, library: dict[str, Any]) -> None:
    status = wait_indexed(api, library["me"])
    assert status["records"] == 3 and status["indexed"] == 3 and status["failed"] == 0
    assert status["model"] and status["dimensions"] and status["dimensions"] > 0
    assert wait_indexed(api, library["other"])["indexed"] == 1


def test_semantic_and_hybrid_search_find_a_record_by_words_not_in_its_title(
    api: httpx.Client, library: dict[str, Any]
) -> None:
    me = library["me"]
    wait_indexed(api, me)
    for mode in ("semantic", "hybrid"):
        found = search(api, me, "espresso beans", mode)
        assert found and found[0]["id"] == library["coffee"]["id"], (mode, found)
        assert found[0]["match"]["score"] > 0 and "espresso" in found[0]["match"]["snippet"]
        assert library["theirs"]["id"] not in {r["id"] for r in found}
    # keyword stays the default, and its items carry no match
    keyword = search(api, me, "espresso", "keyword")
    assert [r["id"] for r in keyword] == [library["coffee"]["id"]] and "match" not in keyword[0]
    assert search(api, me, "espresso beans", "semantic", tag="nothing-has-this") == []
    # list filters apply to searches by meaning too
    assert search(api, me, "espresso beans", "hybrid", pinned="true") == []
    assert [r["id"] for r in search(api, me, "espresso beans", "semantic", pinned="false")][:1] == [
        library["coffee"]["id"]
    ]
    paged = api.get("/api/v1/records", params={"q": "espresso beans", "mode": "semantic", "limit": 1}, headers=me)
    assert len(paged.json()["data"]) == 1 and paged.json()["total_count"] >= 1


def test_related_records_exclude_the_record_itself_and_other_users(api: httpx.Client, library: dict[str, Any]) -> None:
    me, other = library["me"], library["other"]
    wait_indexed(api, me)
    coffee_id = library["coffee"]["id"]
    response = api.get(f"/api/v1/records/{coffee_id}/related", headers=me)
    assert response.status_code == 200, response.text
    related_ids = {item["record"]["id"] for item in response.json()["data"]}
    assert coffee_id not in related_ids and library["theirs"]["id"] not in related_ids
    assert related_ids <= {library["car"]["id"], library["trip"]["id"]}
    # someone else's record, or no record at all, is simply not found
    for record_id in (coffee_id, str(uuid.uuid4()), "not-a-uuid"):
        answer = api.get(f"/api/v1/records/{record_id}/related", headers=other)
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"


def test_ask_answers_from_the_callers_record_and_cites_it(api: httpx.Client, library: dict[str, Any]) -> None:
    me = library["me"]
    wait_indexed(api, me)
    answer = ask(api, me, "Where do I buy espresso beans?")
    cited = [c["record_id"] for c in answer["citations"]]
    assert cited == [library["coffee"]["id"]], answer
    n = answer["citations"][0]["n"]
    assert f"[{n}]" in answer["answer"] and "espresso" in answer["answer"].lower()
    assert answer["citations"][0]["title"] == "Friday shopping" and answer["usage"]["total_tokens"] > 0
    # the other user's near-identical record is never a source of mine, nor mine of theirs
    assert library["theirs"]["id"] not in cited
    theirs = ask(api, library["other"], "Where do I buy espresso beans?")
    assert [c["record_id"] for c in theirs["citations"]] == [library["theirs"]["id"]]


def test_ask_streams_the_sources_then_the_answer(api: httpx.Client, library: dict[str, Any]) -> None:
    me = library["me"]
    wait_indexed(api, me)
    body = {"question": "Which mechanic replaced the brakes?", "stream": True}
    with api.stream("POST", "/api/v1/ask", json=body, headers=me) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response.iter_lines()))
    names = [name for name, _ in events]
    assert names[0] == "citations" and names[-1] == "done" and set(names[1:-1]) == {"delta"}
    sources = {s["record_id"] for s in events[0][1]["sources"]}
    assert library["car"]["id"] in sources and library["theirs"]["id"] not in sources
    done = events[-1][1]
    assert [c["record_id"] for c in done["citations"]] == [library["car"]["id"]]
    streamed = "".join(data["content"] for name, data in events if name == "delta")
    assert f"[{done['citations'][0]['n']}]" in streamed


def test_a_user_without_relevant_records_gets_an_answer_without_citations(suite: Any, api: httpx.Client) -> None:
    me = new_user(suite)
    create(api, me, "Plants", "Water the ficus every Sunday morning.")
    wait_indexed(api, me)
    answer = ask(api, me, "Where do I buy espresso beans?")
    assert answer["citations"] == [] and answer["answer"]
    assert "[" not in answer["answer"]
    nobody = new_user(suite)
    assert ask(api, nobody, "Anything at all?")["citations"] == []


def test_an_edit_changes_what_search_finds_and_a_delete_is_gone_at_once(suite: Any, api: httpx.Client) -> None:
    me = new_user(suite)
    note = create(api, me, "Drinks", "I buy espresso beans on Fridays.")
    other = create(api, me, "Car", "The mechanic replaced the brakes.")
    wait_indexed(api, me)
    assert [r["id"] for r in search(api, me, "espresso", "semantic")] == [note["id"]]
    edited = api.patch(f"/api/v1/records/{note['id']}", json={"content": "Now I drink green tea leaves."}, headers=me)
    assert edited.status_code == 200, edited.text
    assert wait_until(lambda: [r["id"] for r in search(api, me, "green tea", "semantic")] == [note["id"]], 30)
    assert search(api, me, "espresso", "semantic") == []
    # a delete: never returned again, without waiting for the indexer
    assert api.delete(f"/api/v1/records/{other['id']}", headers=me).status_code == 204
    assert search(api, me, "mechanic brakes", "semantic") == []
    assert search(api, me, "mechanic brakes", "hybrid") == []
    assert other["id"] not in {c["record_id"] for c in ask(api, me, "Who replaced the brakes?")["citations"]}
    assert status_of(api, me)["records"] == 1


def test_embedding_failures_leave_the_write_intact_and_are_retried(suite: Any, api: httpx.Client) -> None:
    me = new_user(suite)
    # [[flaky:3]]: the canned upstream refuses this text's first three embedding calls (503); with
    # two attempts allowed the record is "failed" first, then retried later and indexed.
    flaky = create(api, me, "Outage", "[[flaky:3]] the quarterly report is due in March")
    broken = create(api, me, "Broken", "[[fail:500]] this text never embeds")
    assert api.get(f"/api/v1/records/{flaky['id']}", headers=me).status_code == 200
    assert wait_until(lambda: status_of(api, me)["failed"] >= 1, 30), status_of(api, me)
    assert httpx.get(f"{suite.url('llm_service')}/health").status_code == 200
    assert wait_until(lambda: [r["id"] for r in search(api, me, "quarterly report", "semantic")] == [flaky["id"]], 30)
    status = status_of(api, me)
    assert status["indexed"] == 1 and status["failed"] + status["pending"] == 1
    assert broken["id"] not in {r["id"] for r in search(api, me, "text never embeds", "semantic")}


async def _chunk_versions(database_url: str) -> list[tuple[str, int, int, int]]:
    db = Database(database_url)
    try:
        async with db.session() as session:
            rows = await session.execute(
                text(
                    "SELECT r.id, r.version, c.version, COUNT(*) FROM records r "
                    "JOIN record_chunks c ON c.record_id = r.id GROUP BY r.id, r.version, c.version"
                )
            )
            return [tuple(row) for row in rows.all()]  # type: ignore[misc]
    finally:
        await db.dispose()


def test_kill_9_of_the_indexer_mid_backlog_loses_nothing_and_keeps_nothing_stale(suite: Any, api: httpx.Client) -> None:
    me = new_user(suite)
    # [[slow:0.4]]: each embedding call takes a while, so a backlog builds up
    made = [create(api, me, f"Backlog {n}", f"[[slow:0.4]] backlog item number {n} about gardening") for n in range(24)]
    assert wait_until(lambda: 0 < status_of(api, me)["indexed"] < 24, 30), status_of(api, me)
    # edits while the backlog runs: only their newest version may end up indexed
    for record in made[:6]:
        edited = api.patch(
            f"/api/v1/records/{record['id']}", json={"content": f"{record['content']} edited"}, headers=me
        )
        assert edited.status_code == 200
    killed = suite.pid_of("llm_service")
    os.kill(killed, signal.SIGKILL)
    assert wait_until(lambda: _restarted(suite, killed), 60), suite.text()[-3000:]
    status = wait_indexed(api, me, timeout=90)
    assert status["indexed"] == 24 and status["failed"] == 0
    versions = asyncio.run(_chunk_versions(suite.env["DATABASE_URL"]))
    mine = {r["id"] for r in made}
    rows = [row for row in versions if row[0] in mine]
    assert {row[0] for row in rows} == mine  # nothing missed
    assert all(record_version == chunk_version for _, record_version, chunk_version, _ in rows), rows
    assert len(rows) == 24 and all(count == 1 for *_, count in rows)  # one chunk set each, no duplicate


def _restarted(suite: Any, killed: int) -> bool:
    """The launcher runs a new llm_service process, and it answers."""
    try:
        if suite.pid_of("llm_service") == killed:
            return False
        return httpx.get(f"{suite.url('llm_service')}/health", timeout=2).status_code == 200
    except (AssertionError, httpx.HTTPError):
        return False


def test_chat_with_use_records_cites_the_callers_records_and_keeps_the_citations(
    api: httpx.Client, library: dict[str, Any]
) -> None:
    me = library["me"]
    wait_indexed(api, me)
    session = api.post("/api/v1/chat/sessions", json={"title": "About my notes"}, headers=me)
    assert session.status_code == 201, session.text
    sid = session.json()["id"]
    body = {"content": "Where do I buy espresso beans?", "use_records": True}
    reply = api.post(f"/api/v1/chat/sessions/{sid}/messages", json=body, headers=me)
    assert reply.status_code == 200, reply.text
    message = reply.json()["message"]
    assert [c["record_id"] for c in message["citations"]] == [library["coffee"]["id"]]
    with api.stream(
        "POST", f"/api/v1/chat/sessions/{sid}/messages", json={**body, "stream": True}, headers=me
    ) as response:
        events = list(sse_events(response.iter_lines()))
    assert events[-1][0] == "done"
    assert [c["record_id"] for c in events[-1][1]["citations"]] == [library["coffee"]["id"]]
    # a plain message has no citations; the stored history keeps the grounded ones
    plain = api.post(f"/api/v1/chat/sessions/{sid}/messages", json={"content": "Thanks"}, headers=me)
    assert "citations" not in plain.json()["message"]
    history = api.get(f"/api/v1/chat/sessions/{sid}", headers=me).json()["messages"]
    cited = [m for m in history if m.get("citations")]
    assert len(cited) == 2 and all(m["role"] == "assistant" for m in cited)
    assert all(c["record_id"] != library["theirs"]["id"] for m in cited for c in m["citations"])


async def _lose_index_of(database_url: str, record_id: str) -> None:
    db = Database(database_url)
    try:
        async with db.session() as session:
            await session.execute(text("DELETE FROM record_chunks WHERE record_id = :id"), {"id": record_id})
            await session.execute(text("DELETE FROM record_index WHERE id = :id"), {"id": record_id})
            await session.commit()
    finally:
        await db.dispose()


def test_the_reindex_command_rebuilds_a_lost_semantic_index(suite: Any, api: httpx.Client) -> None:
    me = new_user(suite)
    note = create(api, me, "Bees", "The beekeeper collects honey in late summer.")
    wait_indexed(api, me)
    asyncio.run(_lose_index_of(suite.env["DATABASE_URL"], note["id"]))
    assert search(api, me, "beekeeper honey", "semantic") == []
    run = subprocess.run(
        [sys.executable, "-m", "mobile_service.app.reindex", "--embeddings"],
        env=suite.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "marked for embedding" in run.stdout
    assert wait_until(lambda: [r["id"] for r in search(api, me, "beekeeper honey", "semantic")] == [note["id"]], 30)
