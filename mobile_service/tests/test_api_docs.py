"""mobile_service's /openapi.json documents the whole base URL (docs/api.md §6): its own operations
and every forwarded route exactly as the upstream service's own document has it. The upstream
documents are those of the real upstream apps (``build_app()``), so a route added to or changed in
an upstream without mobile's document following fails here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from common.forwarding_rules import FORWARD_ROUTES, FORWARDED_SERVICES, route_for
from image_service.main import build_app as build_image_app
from llm_service.main import build_app as build_llm_app
from mobile_service.app.api_docs import FORWARDED_TO, PROXY_ANSWERS, SCHEMA_REF, merge_documents
from mobile_service.main import build_app
from user_service.main import build_app as build_user_app

UPSTREAM_APPS: dict[str, Callable[..., FastAPI]] = {
    "user_service": build_user_app,
    "llm_service": build_llm_app,
    "image_service": build_image_app,
}
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


def upstream_documents() -> dict[str, dict[str, Any]]:
    return {name: build(configure_logging=False).openapi() for name, build in UPSTREAM_APPS.items()}


def dereference(node: Any, schemas: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every schema ``$ref`` replaced by what it names (a cycle keeps the name)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.removeprefix(SCHEMA_REF)
            assert name in schemas, f"dangling $ref {ref}"
            target = schemas[name]
            return {"cycle": target.get("title")} if name in seen else dereference(target, schemas, (*seen, name))
        return {key: dereference(value, schemas, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [dereference(item, schemas, seen) for item in node]
    return node


def as_upstream_has_it(operation: dict[str, Any], upstream_responses: dict[str, Any]) -> dict[str, Any]:
    """A forwarded operation of mobile's document without what the proxy adds to it."""
    added = {status for status in PROXY_ANSWERS if status not in upstream_responses}
    responses = {status: body for status, body in operation["responses"].items() if status not in added}
    return {**{k: v for k, v in operation.items() if k != FORWARDED_TO}, "responses": responses}


def assert_forwarded_as_upstream(mobile: dict[str, Any], service: str, upstream: dict[str, Any]) -> None:
    mine, theirs = mobile["components"]["schemas"], upstream.get("components", {}).get("schemas", {})
    for route in (r for r in FORWARD_ROUTES if r.service == service):
        upstream_paths = {p: item for p, item in upstream["paths"].items() if route.matches(p)}
        assert upstream_paths, f"{service} documents nothing under {route.prefix}"
        assert {p for p in mobile["paths"] if route.matches(p)} == set(upstream_paths), route.prefix
        for path, item in upstream_paths.items():
            for method in (m for m in METHODS if m in item):
                operation = mobile["paths"][path][method]
                assert operation[FORWARDED_TO] == service
                shown = as_upstream_has_it(operation, item[method]["responses"])
                assert dereference(shown, mine) == dereference(item[method], theirs), (method, path)
            assert set(mobile["paths"][path]) == set(item), path


def test_every_forwarded_route_is_documented_as_its_upstream_documents_it(mobile_client: TestClient) -> None:
    assert set(UPSTREAM_APPS) == set(FORWARDED_SERVICES)
    published = mobile_client.get("/openapi.json")
    assert published.status_code == 200
    document = published.json()
    for service, upstream in upstream_documents().items():
        assert_forwarded_as_upstream(document, service, upstream)


def test_mobile_s_own_operations_stay_as_they_are_and_are_what_the_fuzzers_read(mobile_client: TestClient) -> None:
    own = build_app(configure_logging=False).openapi()
    assert own["paths"] and not [path for path in own["paths"] if route_for(path) is not None]
    published = mobile_client.get("/openapi.json").json()
    for path, item in own["paths"].items():
        assert dereference(published["paths"][path], published["components"]["schemas"]) == dereference(
            item, own["components"]["schemas"]
        )
    assert published["info"] == own["info"] and "servers" not in published  # relative to the base URL
    assert published["components"]["securitySchemes"] == own["components"]["securitySchemes"]


def test_the_base_url_document_is_valid_openapi_with_one_id_per_operation(mobile_client: TestClient) -> None:
    document = mobile_client.get("/openapi.json").json()
    ids = [op["operationId"] for item in document["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids))
    dereference(document["paths"], document["components"]["schemas"])  # every $ref resolves
    operations = list(schemathesis.openapi.from_dict(document).get_all_operations())
    assert len(operations) == len(ids) and all(operation.ok() for operation in operations)
    docs = mobile_client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert mobile_client.get("/redoc").status_code == 200


class RecordRead(BaseModel):
    """A model named like one of mobile's own components, with another shape."""

    badge: str


class BadgeList(BaseModel):
    badges: list[RecordRead]


def test_a_route_added_upstream_appears_and_a_clashing_component_is_renamed() -> None:
    users = build_user_app(configure_logging=False)

    @users.get("/api/v1/users/me/badges", response_model=BadgeList)
    async def my_badges() -> BadgeList:
        return BadgeList(badges=[])

    @users.get("/api/v1/internal/badges", response_model=BadgeList)
    async def not_forwarded() -> BadgeList:
        return BadgeList(badges=[])

    own = build_app(configure_logging=False).openapi()
    merged = merge_documents(own, {"user_service": users.openapi()})
    schemas = merged["components"]["schemas"]
    assert "/api/v1/internal/badges" not in merged["paths"]
    assert schemas["RecordRead"] == own["components"]["schemas"]["RecordRead"]  # mobile's own, untouched
    # BadgeList's name is free, so it keeps it; its item's is not, so that one is renamed.
    assert schemas["BadgeList"]["properties"]["badges"]["items"] == {"$ref": SCHEMA_REF + "user_service.RecordRead"}
    assert schemas["user_service.RecordRead"]["properties"] == {"badge": {"title": "Badge", "type": "string"}}
    assert_forwarded_as_upstream(merged, "user_service", users.openapi())
    # Without the new route mobile's document no longer matches the upstream's: the check catches it.
    stale = merge_documents(own, {"user_service": build_user_app(configure_logging=False).openapi()})
    try:
        assert_forwarded_as_upstream(stale, "user_service", users.openapi())
    except AssertionError:
        pass
    else:
        raise AssertionError("a route missing from mobile's document went unnoticed")
