"""The API document of the mobile app's one base URL (docs/api.md §6): mobile_service's own
operations plus those of every route it forwards, taken from the upstream service's own document.

The upstream documents are built in-process from each upstream's ``build_app()`` (the services
share this repository and its image): no network, no copy to keep in step, and the document
changes with the upstream's code. Only the upstream's paths under the prefixes mobile_service
forwards to it (``FORWARD_ROUTES``) are taken, with the components they reach; a component whose
name mobile_service (or an earlier upstream) already uses for another schema is renamed
``<service>.<Name>`` and its ``$ref``s rewritten. Each forwarded operation is marked
``x-forwarded-to`` and gets the proxy's own 502/503/504 answers where the upstream documents none.
"""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from common.errors import ErrorBody
from common.forwarding_rules import FORWARD_ROUTES, FORWARDED_SERVICES, ForwardRoute

logger = logging.getLogger(__name__)

FORWARDED_TO = "x-forwarded-to"
SCHEMA_REF = "#/components/schemas/"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# What the proxy itself answers on a forwarded route (common.forwarding_rules, docs/api.md §4).
PROXY_ANSWERS: dict[str, str] = {
    "502": "The upstream service failed (upstream_error)",
    "503": "The upstream service is down (service_unavailable)",
    "504": "The upstream service did not answer in time (upstream_timeout)",
}
ERROR_CONTENT: dict[str, Any] = {"application/json": {"schema": {"$ref": SCHEMA_REF + "ErrorBody"}}}

Document = dict[str, Any]


def upstream_document(service: str) -> Document:
    """``service``'s own OpenAPI document, from an app built like the one it runs (no lifespan)."""
    module = importlib.import_module(f"{service}.main")
    return module.build_app(configure_logging=False).openapi()


def forwarded_paths(document: Document, service: str, routes: Iterable[ForwardRoute] = FORWARD_ROUTES) -> Document:
    """The paths of ``document`` that mobile_service forwards to ``service``."""
    prefixes = [route for route in routes if route.service == service]
    return {path: item for path, item in document.get("paths", {}).items() if any(r.matches(path) for r in prefixes)}


def schema_refs(node: Any) -> set[str]:
    """The component names ``node`` refers to directly."""
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix(SCHEMA_REF)} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= schema_refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(schema_refs(item) for item in node)) if node else set()
    return set()


def reachable_schemas(node: Any, schemas: Mapping[str, Any]) -> dict[str, Any]:
    """The components ``node`` reaches, directly or through other components."""
    seen: set[str] = set()
    pending = schema_refs(node)
    while pending:
        name = pending.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        pending |= schema_refs(schemas[name])
    return {name: schemas[name] for name in sorted(seen)}


def rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    """A copy of ``node`` whose schema ``$ref``s follow ``renames``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.removeprefix(SCHEMA_REF) in renames:
            node = {**node, "$ref": SCHEMA_REF + renames[ref.removeprefix(SCHEMA_REF)]}
        return {key: rewrite_refs(value, renames) for key, value in node.items()}
    if isinstance(node, list):
        return [rewrite_refs(item, renames) for item in node]
    return node


def clash_renames(existing: Mapping[str, Any], incoming: Mapping[str, Any], service: str) -> dict[str, str]:
    """Which incoming components must be renamed: those whose name is taken by a different
    schema. A rename changes the schemas that refer to the renamed one, so repeat until stable."""
    renames: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for name, schema in incoming.items():
            if name in renames or name not in existing:
                continue
            if rewrite_refs(schema, renames) != existing[name]:
                renames[name] = f"{service}.{name}"
                changed = True
    return renames


def mark_forwarded(path_item: Document, service: str) -> Document:
    """A forwarded path's operations, marked with their owner and the proxy's own answers."""
    marked = dict(path_item)
    for method, operation in path_item.items():
        if method not in HTTP_METHODS:
            continue
        responses = dict(operation.get("responses", {}))
        for status, description in PROXY_ANSWERS.items():
            responses.setdefault(status, {"description": description, "content": ERROR_CONTENT})
        marked[method] = {**operation, FORWARDED_TO: service, "responses": responses}
    return marked


def add_upstream(merged: Document, service: str, upstream: Document, routes: Iterable[ForwardRoute]) -> None:
    """Add to ``merged`` the paths mobile_service forwards to ``service``, from its document."""
    paths = forwarded_paths(upstream, service, routes)
    components = upstream.get("components", {})
    incoming = reachable_schemas(paths, components.get("schemas", {}))
    schemas = merged["components"].setdefault("schemas", {})
    renames = clash_renames(schemas, incoming, service)
    for name, schema in incoming.items():
        schemas.setdefault(renames.get(name, name), rewrite_refs(schema, renames))
    schemes = merged["components"].setdefault("securitySchemes", {})
    for name, scheme in components.get("securitySchemes", {}).items():
        # Every service verifies the same bearer token (common.security): one scheme, one "Authorize".
        if schemes.setdefault(name, scheme) != scheme:
            raise ValueError(f"{service} defines the security scheme {name!r} differently")
    for path, item in paths.items():
        merged["paths"][path] = mark_forwarded(rewrite_refs(item, renames), service)


def merge_documents(
    own: Document, upstreams: Mapping[str, Document], routes: Iterable[ForwardRoute] = FORWARD_ROUTES
) -> Document:
    """mobile_service's document ``own`` with the forwarded paths of each upstream's document.
    A forwarded path is the upstream's even if ``own`` had it: the proxy answers it first."""
    routes = tuple(routes)
    merged = copy.deepcopy(own)
    merged.setdefault("components", {})
    merged["paths"] = {path: item for path, item in merged.get("paths", {}).items() if not _forwarded(path, routes)}
    merged["components"].setdefault("schemas", {}).setdefault("ErrorBody", ErrorBody.model_json_schema())
    for service, document in upstreams.items():
        add_upstream(merged, service, document, routes)
    return merged


def _forwarded(path: str, routes: Iterable[ForwardRoute]) -> bool:
    return any(route.matches(path) for route in routes)


def base_url_document(
    own: Callable[[], Document], build: Callable[[str], Document] = upstream_document
) -> Callable[[], Document]:
    """What ``/openapi.json`` publishes: ``own()`` merged with every forwarded service's document.
    An upstream whose app cannot be built is left out (and logged) rather than failing the docs."""

    def document() -> Document:
        upstreams: dict[str, Document] = {}
        for service in FORWARDED_SERVICES:
            try:
                upstreams[service] = build(service)
            except Exception:
                logger.exception("the API document of %s could not be built; /docs leaves it out", service)
        return merge_documents(own(), upstreams)

    return document
