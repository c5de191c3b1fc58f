"""Records API in-process (real SQLite file, real Redis): CRUD, limits, owner scoping, search,
publishing and the AI actions."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mobile_service.app.schemas import RecordRead
from mobile_service.main import build_app
from mobile_service.tests.conftest import RunningProcess
from mobile_service.tests.records_api import assert_error, create

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def alice(auth_headers: Headers) -> dict[str, str]:
    return auth_headers(str(uuid.uuid4()))


@pytest.fixture
def bob(auth_headers: Headers) -> dict[str, str]:
    return auth_headers(str(uuid.uuid4()))


def test_create_normalises_tags_and_reads_back(mobile_client: TestClient, alice: dict[str, str]) -> None:
    record = create(mobile_client, alice, title="Groceries", content="- milk", tags=[" Home ", "home", "TODO", ""])
    assert record["tags"] == ["home", "todo"]
    assert record["version"] == 1 and record["visibility"] == "private" and record["slug"] is None
    assert record["deleted_at"] is None and record["summary"] is None and record["attachments"] == []
    read = mobile_client.get(f"/api/v1/records/{record['id']}", headers=alice)
    assert read.status_code == 200
    assert read.json() == record
    assert read.headers["etag"] == '"1"'


def test_repeating_a_create_with_a_client_id_is_idempotent(mobile_client: TestClient, alice: dict[str, str]) -> None:
    record_id = str(uuid.uuid4())
    first = create(mobile_client, alice, id=record_id, title="Offline note", tags=["x"])
    again = create(mobile_client, alice, id=record_id, title="Offline note", tags=["x"])
    assert again == first
    listed = mobile_client.get("/api/v1/records", params={"tag": "x"}, headers=alice).json()
    assert [r["id"] for r in listed["data"]].count(record_id) == 1
    different = mobile_client.post("/api/v1/records", json={"id": record_id, "title": "Other"}, headers=alice)
    assert assert_error(different, 409, "conflict")["record"]["title"] == "Offline note"


def test_other_users_records_are_not_found(
    mobile_client: TestClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    record = create(mobile_client, alice, title="Private diary")
    url = f"/api/v1/records/{record['id']}"
    assert_error(mobile_client.get(url, headers=bob), 404, "not_found")
    assert_error(mobile_client.patch(url, json={"title": "mine now"}, headers=bob), 404, "not_found")
    assert_error(mobile_client.delete(url, headers=bob), 404, "not_found")
    assert_error(mobile_client.post(f"{url}/publish", headers=bob), 404, "not_found")
    assert_error(mobile_client.post(f"{url}/ai/summarize", headers=bob), 404, "not_found")
    # Reusing someone else's id for a create is 404, like an id nobody uses (docs/api.md §4).
    taken = assert_error(
        mobile_client.post("/api/v1/records", json={"id": record["id"], "title": "x"}, headers=bob), 404, "not_found"
    )
    assert "record" not in taken
    unknown = assert_error(mobile_client.get(f"/api/v1/records/{uuid.uuid4()}", headers=bob), 404, "not_found")
    assert taken["detail"] == unknown["detail"]
    pushed = mobile_client.post(
        "/api/v1/sync/push",
        json={"changes": [{"id": record["id"], "op": "upsert", "fields": {"title": "x"}}]},
        headers=bob,
    ).json()["results"]
    assert pushed == [
        {
            "id": record["id"],
            "status": "error",
            "record": None,
            "detail": {"code": "not_found", "message": taken["detail"]},
        }
    ]
    assert mobile_client.get("/api/v1/records", headers=bob).json()["total_count"] == 0
    assert mobile_client.get(url, headers=alice).json()["title"] == "Private diary"


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1", "00000000-0000-0000-0000-00000000000g", "%27%20or%201=1"])
def test_non_uuid_ids_are_404(mobile_client: TestClient, alice: dict[str, str], bad_id: str) -> None:
    assert_error(mobile_client.get(f"/api/v1/records/{bad_id}", headers=alice), 404, "not_found")
    assert_error(mobile_client.patch(f"/api/v1/records/{bad_id}", json={}, headers=alice), 404, "not_found")


def test_hostile_sizes_and_limits_get_validation_errors(mobile_client: TestClient, alice: dict[str, str]) -> None:
    too_long = mobile_client.post("/api/v1/records", json={"content": "x" * 200_001}, headers=alice)
    assert too_long.status_code in (413, 422) and too_long.json()["code"] in ("validation_error", "payload_too_large")
    assert_error(
        mobile_client.post("/api/v1/records", json={"tags": [f"t{i}" for i in range(21)]}, headers=alice),
        422,
        "validation_error",
    )
    assert_error(
        mobile_client.post("/api/v1/records", json={"tags": ["x" * 33]}, headers=alice), 422, "validation_error"
    )
    assert_error(
        mobile_client.post("/api/v1/records", json={"title": "x" * 201}, headers=alice), 422, "validation_error"
    )
    assert_error(mobile_client.post("/api/v1/records", json={"owner_id": "me"}, headers=alice), 422, "validation_error")
    assert_error(mobile_client.get("/api/v1/records?limit=1000", headers=alice), 422, "validation_error")
    assert_error(mobile_client.get("/api/v1/records?offset=-1", headers=alice), 422, "validation_error")
    assert_error(
        mobile_client.get("/api/v1/records?offset=99999999999999999999", headers=alice), 422, "validation_error"
    )
    assert_error(mobile_client.get("/api/v1/records?sort=password", headers=alice), 422, "validation_error")
    assert_error(mobile_client.post("/api/v1/records", content=b"{not json", headers=alice), 422, "validation_error")
    assert_error(
        mobile_client.post("/api/v1/records", json={"content": "a\x00b"}, headers=alice), 422, "validation_error"
    )
    for q in ("\x00abc", '"""', "NEAR(a b)", "(", "*", "\\"):
        assert mobile_client.get("/api/v1/records", params={"q": q}, headers=alice).status_code == 200
    assert mobile_client.get("/api/v1/records", params={"tag": "\x00"}, headers=alice).status_code == 200
    assert_error(mobile_client.get("/api/v1/public/records/%00"), 404, "not_found")
    # Exactly at the limits is fine: 20 tags of 32 characters, 100,000 characters of content.
    create(mobile_client, alice, tags=[f"{i:02d}" + "x" * 30 for i in range(20)], content="y" * 100_000)


@pytest.mark.parametrize("body", [{}, {"title": "   ", "content": "\n\t"}, {"tags": ["only-a-tag"]}])
def test_a_record_needs_a_title_or_content(
    mobile_client: TestClient, alice: dict[str, str], body: dict[str, Any]
) -> None:
    before = mobile_client.get("/api/v1/records", headers=alice).json()["total_count"]
    refused = assert_error(mobile_client.post("/api/v1/records", json=body, headers=alice), 422, "validation_error")
    assert "a title or content" in str(refused["detail"])
    assert mobile_client.get("/api/v1/records", headers=alice).json()["total_count"] == before
    assert create(mobile_client, alice, content="just a body")["title"] == ""


def test_requests_without_a_token_are_401(mobile_client: TestClient) -> None:
    response = mobile_client.get("/api/v1/records")
    assert_error(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(mobile_client.get("/api/v1/records", headers={"Authorization": "Bearer x.y.z"}), 401, "invalid_token")


def test_stale_version_is_409_with_the_current_record(mobile_client: TestClient, alice: dict[str, str]) -> None:
    record = create(mobile_client, alice, title="v1")
    url = f"/api/v1/records/{record['id']}"
    updated = mobile_client.patch(url, json={"title": "v2", "version": 1}, headers=alice)
    assert updated.status_code == 200 and updated.json()["version"] == 2
    assert updated.json()["content"] == "" and updated.json()["title"] == "v2"
    stale = assert_error(mobile_client.patch(url, json={"title": "lost", "version": 1}, headers=alice), 409, "conflict")
    assert stale["record"]["title"] == "v2" and stale["record"]["version"] == 2
    via_header = mobile_client.patch(url, json={"pinned": True}, headers={**alice, "If-Match": '"2"'})
    assert via_header.status_code == 200 and via_header.json()["version"] == 3 and via_header.json()["pinned"]
    assert_error(
        mobile_client.patch(url, json={"pinned": False}, headers={**alice, "If-Match": '"2"'}), 409, "conflict"
    )
    assert_error(
        mobile_client.patch(url, json={"pinned": False}, headers={**alice, "If-Match": "junk"}), 400, "bad_request"
    )
    unversioned = mobile_client.patch(url, json={"summary": "s"}, headers=alice)
    assert unversioned.json()["version"] == 4 and unversioned.json()["summary"] == "s"


def test_delete_leaves_nothing_visible_and_is_repeatable(mobile_client: TestClient, alice: dict[str, str]) -> None:
    record = create(mobile_client, alice, title="to delete", tags=["gone"])
    url = f"/api/v1/records/{record['id']}"
    assert mobile_client.delete(url, headers=alice).status_code == 204
    assert_error(mobile_client.get(url, headers=alice), 404, "not_found")
    assert_error(mobile_client.patch(url, json={"title": "back"}, headers=alice), 404, "not_found")
    assert mobile_client.get("/api/v1/records", params={"tag": "gone"}, headers=alice).json()["total_count"] == 0
    assert mobile_client.get("/api/v1/records", params={"q": "to delete"}, headers=alice).json()["total_count"] == 0
    assert mobile_client.delete(url, headers=alice).status_code == 204


def test_list_pages_filters_and_sorts(mobile_client: TestClient, auth_headers: Headers) -> None:
    user = auth_headers(str(uuid.uuid4()))
    made = [
        create(mobile_client, user, title=f"r{i}", tags=["even" if i % 2 == 0 else "odd"], pinned=i == 3)
        for i in range(5)
    ]
    page = mobile_client.get("/api/v1/records", params={"limit": 2}, headers=user).json()
    assert set(page) == {"data", "total_count", "has_more", "offset", "limit"}
    assert page["total_count"] == 5 and page["has_more"] is True and page["limit"] == 2 and page["offset"] == 0
    assert [r["title"] for r in page["data"]] == ["r4", "r3"]  # newest update first
    last = mobile_client.get("/api/v1/records", params={"limit": 2, "offset": 4}, headers=user).json()
    assert [r["title"] for r in last["data"]] == ["r0"] and last["has_more"] is False
    even = mobile_client.get("/api/v1/records", params={"tag": "EVEN"}, headers=user).json()
    assert sorted(r["title"] for r in even["data"]) == ["r0", "r2", "r4"]
    pinned = mobile_client.get("/api/v1/records", params={"pinned": "true"}, headers=user).json()
    assert [r["id"] for r in pinned["data"]] == [made[3]["id"]]
    by_title = mobile_client.get("/api/v1/records", params={"sort": "title"}, headers=user).json()
    assert [r["title"] for r in by_title["data"]] == ["r0", "r1", "r2", "r3", "r4"]


def test_a_listed_record_is_exactly_the_record_read_by_id(mobile_client: TestClient, auth_headers: Headers) -> None:
    """The list writes its JSON from the rows without building models (common.pagination.page_json):
    each item must still be what GET /records/{id} answers, field for field (the bytes are held
    to pydantic's in common/tests/test_pagination.py)."""
    user = auth_headers(str(uuid.uuid4()))
    create(mobile_client, user, title="Plain", content="text")
    create(mobile_client, user, title='会议 "notes" </script>', content="- [ ] 日记\n\ttab", tags=["Work", "日记"])
    response = mobile_client.get("/api/v1/records", headers=user)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    listed = response.json()["data"]
    assert len(listed) == 2
    for item in listed:
        read = mobile_client.get(f"/api/v1/records/{item['id']}", headers=user)
        assert read.status_code == 200
        assert item == read.json()
        assert set(item) == set(RecordRead.model_fields)
        assert item["created_at"].endswith("Z") and item["deleted_at"] is None


def test_every_list_page_states_the_total_of_the_callers_live_records(
    mobile_client: TestClient, auth_headers: Headers
) -> None:
    user, other = auth_headers(str(uuid.uuid4())), auth_headers(str(uuid.uuid4()))
    made = [create(mobile_client, user, title=f"n{i}", tags=["t"] if i < 3 else []) for i in range(5)]
    create(mobile_client, other, title="someone else's")
    assert mobile_client.delete(f"/api/v1/records/{made[0]['id']}", headers=user).status_code == 204

    def page(**params: Any) -> dict[str, Any]:
        response = mobile_client.get("/api/v1/records", params=params, headers=user)
        assert response.status_code == 200
        return response.json()

    first, last, past = page(limit=2), page(limit=2, offset=2), page(limit=2, offset=10)
    assert [first["total_count"], last["total_count"], past["total_count"]] == [4, 4, 4]  # the count rides on the page
    assert [first["has_more"], last["has_more"], past["has_more"]] == [True, False, False]
    assert past["data"] == []
    assert page(tag="t", limit=1)["total_count"] == 2 and page(tag="t", offset=5)["total_count"] == 2
    # The list's items are the records as a read gives them: no column more, none less.
    read = mobile_client.get(f"/api/v1/records/{made[4]['id']}", headers=user).json()
    assert first["data"][0] == read
    assert page(limit=1)["data"] == [read] and page()["total_count"] == 4
    assert mobile_client.get("/api/v1/records", params={"offset": 3}, headers=other).json()["total_count"] == 1


def test_search_finds_english_and_chinese_ranked_and_scoped(mobile_client: TestClient, auth_headers: Headers) -> None:
    user, other = auth_headers(str(uuid.uuid4())), auth_headers(str(uuid.uuid4()))
    in_content = create(mobile_client, user, title="Notes", content="We discussed the quarterly budget at length.")
    in_title = create(mobile_client, user, title="Budget review", content="numbers")
    chinese = create(mobile_client, user, title="周一", content="项目会议纪要：讨论预算")
    create(mobile_client, user, title="Unrelated", content="gardening")
    create(mobile_client, other, title="Budget of someone else", content="会议")

    def ids(q: str) -> list[str]:
        response = mobile_client.get("/api/v1/records", params={"q": q}, headers=user)
        assert response.status_code == 200
        return [r["id"] for r in response.json()["data"]]

    assert ids("budget") == [in_title["id"], in_content["id"]]  # a title hit ranks first
    assert ids("BUDGET review") == [in_title["id"]]
    apart = create(mobile_client, user, title="开会", content="议程")  # 会 and 议, never adjacent
    assert ids("会议") == [chinese["id"]]  # two characters: below the trigram length
    assert ids("议程") == [apart["id"]]
    assert sorted(ids("会")) == sorted([apart["id"], chinese["id"]])
    assert ids("budget 预算") == [] and ids("讨论 预算") == [chinese["id"]]
    assert ids("会议纪要") == [chinese["id"]]
    assert ids("预算") == [chinese["id"]]
    assert ids("quarterly 预算") == []
    assert ids("nothing-like-this") == []
    assert ids('"quoted" AND OR NEAR(') == []  # query syntax is text, not FTS operators
    assert ids("%") == [] and ids("_") == []
    tagged = mobile_client.get("/api/v1/records", params={"q": "budget", "limit": 1}, headers=user).json()
    assert tagged["total_count"] == 2 and tagged["has_more"] is True


def test_publish_shows_only_public_fields_until_unpublished(mobile_client: TestClient, alice: dict[str, str]) -> None:
    record = create(mobile_client, alice, title="Hello world", content="# Hi", tags=["blog"])
    published = mobile_client.post(f"/api/v1/records/{record['id']}/publish", headers=alice)
    assert published.status_code == 200
    slug = published.json()["slug"]
    assert published.json()["visibility"] == "public" and len(slug) >= 20
    public = mobile_client.get(f"/api/v1/public/records/{slug}")
    assert public.status_code == 200
    assert public.json() == {
        "slug": slug,
        "title": "Hello world",
        "content": "# Hi",
        "summary": None,
        "tags": ["blog"],
        "attachments": [],
        "created_at": record["created_at"],
        "updated_at": published.json()["updated_at"],
    }
    again = mobile_client.post(f"/api/v1/records/{record['id']}/publish", headers=alice)
    assert again.json()["slug"] == slug  # publishing twice keeps the address
    unpublished = mobile_client.delete(f"/api/v1/records/{record['id']}/publish", headers=alice)
    assert unpublished.json()["visibility"] == "private" and unpublished.json()["slug"] is None
    assert_error(mobile_client.get(f"/api/v1/public/records/{slug}"), 404, "not_found")
    republished = mobile_client.post(f"/api/v1/records/{record['id']}/publish", headers=alice).json()
    assert republished["slug"] != slug
    mobile_client.delete(f"/api/v1/records/{record['id']}", headers=alice)
    assert_error(mobile_client.get(f"/api/v1/public/records/{republished['slug']}"), 404, "not_found")
    assert_error(mobile_client.get("/api/v1/public/records/" + "x" * 65), 422, "validation_error")


def test_ai_action_with_llm_service_down_is_503(mobile_client: TestClient, alice: dict[str, str]) -> None:
    record = create(mobile_client, alice, title="t", content="c")
    body = assert_error(
        mobile_client.post(f"/api/v1/records/{record['id']}/ai/summarize", headers=alice), 503, "service_unavailable"
    )
    assert "llm_service" in body["detail"]
    assert_error(
        mobile_client.post(f"/api/v1/records/{record['id']}/ai/translate", headers=alice), 422, "validation_error"
    )


@pytest.fixture(scope="module")
def ai_client(mobile_settings: Callable[..., Any], stub: RunningProcess) -> Iterator[TestClient]:
    with TestClient(build_app(mobile_settings(llm_service_url=stub.url), configure_logging=False)) as client:
        yield client


def test_ai_actions_store_suggest_and_apply(ai_client: TestClient, alice: dict[str, str]) -> None:
    record = create(ai_client, alice, title="Q3", content="We met about the budget.", tags=["work"])
    url = f"/api/v1/records/{record['id']}/ai"
    summary = ai_client.post(f"{url}/summarize", headers=alice).json()
    assert summary["result"] == "A short summary." and summary["applied"] is True
    assert summary["record"]["summary"] == "A short summary." and summary["record"]["version"] == 2
    tags = ai_client.post(f"{url}/tags", headers=alice).json()
    assert tags == {"task": "tags", "result": ["meeting", "budget"], "applied": False, "record": None}
    applied = ai_client.post(f"{url}/tags?apply=true", headers=alice).json()
    assert applied["record"]["tags"] == ["work", "meeting", "budget"]
    title = ai_client.post(f"{url}/title", headers=alice).json()
    assert title["result"] == "Budget meeting" and title["applied"] is False
    assert ai_client.post(f"{url}/title?apply=1", headers=alice).json()["record"]["title"] == "Budget meeting"
    polish = ai_client.post(f"{url}/polish", headers=alice).json()
    assert polish["result"] == "WE MET ABOUT THE BUDGET." and polish["applied"] is False
    assert (
        ai_client.get(f"/api/v1/records/{record['id']}", headers=alice).json()["content"] == "We met about the budget."
    )


def test_ai_action_passes_on_rate_limits_with_retry_after(ai_client: TestClient, alice: dict[str, str]) -> None:
    record = create(ai_client, alice, title="Busy", content="[[fail:429]]")
    response = ai_client.post(f"/api/v1/records/{record['id']}/ai/summarize", headers=alice)
    assert_error(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "7"
