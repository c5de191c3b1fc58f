"""common.pagination: the bounded Offset/Limit query types (huge offsets are a 422, never a 500),
the page shape and its ``has_more``, and ``page_json`` writing that shape as pydantic does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel

from common.app_factory import create_app
from common.pagination import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, Limit, Offset, Page, page_json, page_of

TOTAL = 7


class Thing(BaseModel):
    n: int


router = APIRouter()


@router.get("/things", response_model=Page[Thing])
async def list_things(offset: Offset = 0, limit: Limit = DEFAULT_LIMIT) -> Page[Thing]:
    rows = [Thing(n=n) for n in range(TOTAL)][offset : offset + limit]
    return page_of(rows, TOTAL, offset, limit)


@pytest.fixture(scope="module")
def client(make_settings: Callable[..., Any]) -> Iterator[TestClient]:
    app = create_app(
        make_settings(service="pagination_test"),
        title="pagination test",
        routers=[router],
        use_database=False,
        use_redis=False,
        configure_logging=False,
    )
    with TestClient(app) as c:
        yield c


def test_pages_walk_the_list_with_has_more(client: TestClient) -> None:
    first = client.get("/things", params={"limit": 3}).json()
    assert first == {
        "data": [{"n": 0}, {"n": 1}, {"n": 2}],
        "total_count": TOTAL,
        "has_more": True,
        "offset": 0,
        "limit": 3,
    }
    last = client.get("/things", params={"offset": 6, "limit": 3}).json()
    assert last["data"] == [{"n": 6}] and last["has_more"] is False
    assert client.get("/things").json()["limit"] == DEFAULT_LIMIT


def test_an_offset_past_the_end_is_an_empty_last_page(client: TestClient) -> None:
    page = client.get("/things", params={"offset": MAX_OFFSET}).json()
    assert page["data"] == [] and page["has_more"] is False and page["offset"] == MAX_OFFSET


@pytest.mark.parametrize(
    "params",
    [
        {"offset": 10**20},
        {"offset": str(2**63)},
        {"offset": MAX_OFFSET + 1},
        {"offset": -1},
        {"offset": "1e20"},
        {"limit": 0},
        {"limit": MAX_LIMIT + 1},
        {"limit": 10**30},
    ],
)
def test_out_of_range_paging_is_a_422_in_the_error_shape(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/things", params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error" and body["request_id"] == response.headers["x-request-id"]


def test_has_more_counts_the_rows_returned_not_the_limit() -> None:
    # A short page in the middle (rows filtered after the count) does not claim more than exist.
    assert page_of([1, 2], total=5, offset=3, limit=10).has_more is False
    assert page_of([1, 2], total=5, offset=0, limit=2).has_more is True
    assert page_of([], total=0, offset=0, limit=20).model_dump() == {
        "data": [],
        "total_count": 0,
        "has_more": False,
        "offset": 0,
        "limit": 20,
    }


def test_the_openapi_schema_states_the_bounds(client: TestClient) -> None:
    params = {
        p["name"]: p["schema"] for p in client.get("/openapi.json").json()["paths"]["/things"]["get"]["parameters"]
    }
    assert params["offset"]["minimum"] == 0 and params["offset"]["maximum"] == MAX_OFFSET
    assert params["limit"]["minimum"] == 1 and params["limit"]["maximum"] == MAX_LIMIT


class Note(BaseModel):
    id: str
    title: str
    tags: list[str]
    pinned: bool
    slug: str | None
    version: int
    created_at: datetime
    deleted_at: datetime | None


def test_page_json_writes_the_bytes_pydantic_writes_for_the_same_page() -> None:
    rows: list[dict[str, Any]] = [
        {
            "id": "a",
            "title": 'Café 会议 "quoted" </script> \\ \n tab\t',
            "tags": ["x", "日记"],
            "pinned": True,
            "slug": None,
            "version": 3,
            "created_at": datetime(2026, 12, 1, 9, 30, 0, 123456, tzinfo=UTC),
            "deleted_at": None,
        },
        {
            "id": "b",
            "title": "",
            "tags": [],
            "pinned": False,
            "slug": "b-slug",
            "version": 2**40,
            "created_at": datetime(2026, 12, 1, 9, 30, tzinfo=UTC),  # no microseconds
            "deleted_at": datetime(2026, 12, 2, 0, 0, 0, 1, tzinfo=UTC),
        },
    ]
    for offset, limit, total in ((0, 2, 5), (3, 2, 5), (0, 20, 2)):
        expected = page_of([Note.model_validate(row) for row in rows], total, offset, limit).model_dump_json()
        assert page_json(rows, total, offset, limit) == expected.encode()
    assert page_json([], 0, 0, 20) == page_of([], 0, 0, 20).model_dump_json().encode()
