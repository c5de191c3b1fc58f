"""mobile_service's side of search by meaning, with llm_service unreachable: the mode is
validated, a search by meaning says plainly that its upstream is down (while keyword search and
every record write go on), and related records take only the caller's record ids. The working
path, with llm_service's index, is tested end to end in tests/test_e2e_ask.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fastapi.testclient import TestClient

from mobile_service.tests.records_api import assert_error, create


def test_an_unknown_mode_is_422(mobile_client: TestClient, auth_headers: Callable[[str], dict[str, str]]) -> None:
    me = auth_headers(str(uuid.uuid4()))
    response = mobile_client.get("/api/v1/records", params={"q": "x", "mode": "vector"}, headers=me)
    assert_error(response, 422, "validation_error")


def test_search_by_meaning_without_llm_service_is_an_upstream_error_and_nothing_else_breaks(
    mobile_client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    me = auth_headers(str(uuid.uuid4()))
    record = create(mobile_client, me, title="Beans", content="espresso from the market")
    for mode in ("semantic", "hybrid"):
        response = mobile_client.get("/api/v1/records", params={"q": "espresso", "mode": mode}, headers=me)
        assert response.status_code in (502, 503), response.text
        assert response.json()["code"] in ("upstream_error", "service_unavailable")
    keyword = mobile_client.get("/api/v1/records", params={"q": "espresso"}, headers=me)
    assert [r["id"] for r in keyword.json()["data"]] == [record["id"]]
    # mode without q is the plain list
    plain = mobile_client.get("/api/v1/records", params={"mode": "semantic"}, headers=me)
    assert plain.status_code == 200 and [r["id"] for r in plain.json()["data"]] == [record["id"]]


def test_related_takes_only_record_ids(
    mobile_client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    me = auth_headers(str(uuid.uuid4()))
    for record_id in ("not-a-uuid", "abc%3Flimit=50", "..%2F..%2Fchat"):
        response = mobile_client.get(f"/api/v1/records/{record_id}/related", headers=me)
        assert response.status_code == 404, (record_id, response.text)
    too_many = mobile_client.get(f"/api/v1/records/{uuid.uuid4()}/related", params={"limit": 51}, headers=me)
    assert_error(too_many, 422, "validation_error")
