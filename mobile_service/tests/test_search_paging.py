"""Search over many matches (docs/api.md §6 ``q``): every match of the owner appears exactly once across
the pages, counts are exact, other users' records never count nor change the order, and on
SQLite records with every term in the title come first, then the rest, each newest first."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from mobile_service.tests.records_api import create


def pages(client: TestClient, headers: dict[str, str], size: int, **params: Any) -> tuple[list[str], list[int]]:
    """Every page of a search: the ids in order, and the total_count each page reported."""
    ids: list[str] = []
    totals: list[int] = []
    offset = 0
    while True:
        response = client.get("/api/v1/records", params={**params, "offset": offset, "limit": size}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [r["id"] for r in body["data"]]
        totals.append(body["total_count"])
        if not body["has_more"]:
            return ids, totals
        offset += size


def test_paging_a_broad_search_returns_each_match_once(
    mobile_client: TestClient, auth_headers: Callable[[str], dict[str, str]], database_url: str
) -> None:
    owner, other = auth_headers(str(uuid.uuid4())), auth_headers(str(uuid.uuid4()))
    made = [
        create(
            mobile_client, owner, title=f"note {n}", content=f"the lantern list {n}", pinned=n % 3 == 0, tags=["log"]
        )
        for n in range(11)
    ]
    titled = [create(mobile_client, owner, title=f"Lantern {n}", content="in the title") for n in range(2)]
    create(mobile_client, owner, title="unrelated", content="no match here")
    for n in range(5):
        create(mobile_client, other, title="Lantern of someone else", content=f"lantern {n}")
    gone = made[4]
    assert mobile_client.delete(f"/api/v1/records/{gone['id']}", headers=owner).status_code == 204
    live = {r["id"] for r in made if r is not gone} | {r["id"] for r in titled}

    for size in (1, 3, 5, 20):
        ids, totals = pages(mobile_client, owner, size, q="lantern")
        assert len(ids) == len(set(ids)) == len(live), (size, ids)
        assert set(ids) == live
        assert set(totals) == {len(live)}

    if database_url.startswith("sqlite"):
        ids, _ = pages(mobile_client, owner, 3, q="lantern")
        newest_first = [r["id"] for r in reversed(made) if r is not gone]
        assert ids == [titled[1]["id"], titled[0]["id"], *newest_first]

    pinned, totals = pages(mobile_client, owner, 2, q="lantern", pinned="true")
    assert sorted(pinned) == sorted(r["id"] for r in made if r["pinned"] and r is not gone)
    assert set(totals) == {len(pinned)}
    tagged, _ = pages(mobile_client, owner, 4, q="lantern", tag="log")
    assert set(tagged) == {r["id"] for r in made if r is not gone}
    if database_url.startswith("sqlite"):  # PostgreSQL matches whole words
        short, _ = pages(mobile_client, owner, 4, q="lantern 1")  # "1": too short for trigrams, a substring
        expected = [r for r in [*made, *titled] if "1" in r["title"] + r["content"] and r is not gone]
        assert set(short) == {r["id"] for r in expected}
    assert pages(mobile_client, owner, 5, q="lantern me")[0] == []  # "me" (short) is in no lantern record
    newcomer = auth_headers(str(uuid.uuid4()))  # never wrote a record
    assert pages(mobile_client, newcomer, 5, q="lantern") == ([], [0])


def test_an_edit_moves_a_record_in_and_out_of_the_results(
    mobile_client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    owner = auth_headers(str(uuid.uuid4()))
    record = create(mobile_client, owner, title="draft", content="about ferrets")
    assert pages(mobile_client, owner, 10, q="ferrets")[0] == [record["id"]]
    changed = mobile_client.patch(f"/api/v1/records/{record['id']}", json={"content": "about otters"}, headers=owner)
    assert changed.status_code == 200
    assert pages(mobile_client, owner, 10, q="ferrets")[0] == []
    assert pages(mobile_client, owner, 10, q="otters")[0] == [record["id"]]


def test_other_users_writing_the_same_words_never_change_my_order(
    mobile_client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    # Ranking by table-wide word statistics (bm25) would let a user learn from the order of
    # their own results how often other users write a word.
    me, them = auth_headers(str(uuid.uuid4())), auth_headers(str(uuid.uuid4()))
    mine = [
        create(mobile_client, me, title="plan", content="secretplan secretplan secretplan controlword"),
        create(mobile_client, me, title="plan", content="secretplan controlword controlword controlword"),
        create(mobile_client, me, title="会议", content="周一的会议"),
        create(mobile_client, me, title="周报", content="会议纪要"),
    ]
    queries = ["secretplan controlword", "会议", "会议纪要 plan", "plan"]
    before = {q: pages(mobile_client, me, 10, q=q)[0] for q in queries}
    assert set(before["secretplan controlword"]) == {mine[0]["id"], mine[1]["id"]}
    for n in range(6):
        create(mobile_client, them, title="secretplan 会议", content=f"secretplan {n} 会议")
    assert {q: pages(mobile_client, me, 10, q=q)[0] for q in queries} == before


def test_a_query_of_only_control_characters_finds_nothing_instead_of_failing(
    mobile_client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    owner = auth_headers(str(uuid.uuid4()))
    record = create(mobile_client, owner, title="kept", content="about badgers")
    for q in ("\x7f", "\x11", "\x7f\x11\x01"):
        assert pages(mobile_client, owner, 10, q=q) == ([], [0]), repr(q)
    assert pages(mobile_client, owner, 10, q="badgers")[0] == [record["id"]]
