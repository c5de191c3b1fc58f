"""The forwarding rules both proxies share, framework-neutral (no aiohttp, no starlette):
which path goes to which service (``FORWARD_ROUTES``, ``route_for``; dot segments never match),
hop-by-hop header filtering both ways, the upstream URL, the 503/504/502 failures and the
timeouts (``ForwardingConfig``). The ASGI proxy is ``common.forwarding``; web_service's WSGI one is
``common.forwarding_wsgi``: it imports only this module, so the Flask process loads no aiohttp.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from common.config import MODEL_CALL_BUDGET_SECONDS
from common.errors import ServiceUnavailable, UpstreamError, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class ForwardRoute:
    """``prefix`` itself and everything below it goes to ``service``. ``long_running`` routes
    (model calls: chat, text tasks, model lists, image generation) get the long read timeout."""

    prefix: str
    service: str
    long_running: bool = False

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")


# docs/api.md §6: the mobile app's (and the browser's) one base URL forwards these to their owners.
FORWARD_ROUTES: tuple[ForwardRoute, ...] = (
    ForwardRoute("/api/v1/auth", "user_service"),
    ForwardRoute("/api/v1/users", "user_service"),
    ForwardRoute("/api/v1/chat", "llm_service", long_running=True),
    ForwardRoute("/api/v1/text", "llm_service", long_running=True),
    ForwardRoute("/api/v1/models", "llm_service", long_running=True),
    ForwardRoute("/api/v1/usage", "llm_service"),
    ForwardRoute("/api/v1/ask", "llm_service", long_running=True),
    ForwardRoute("/api/v1/index", "llm_service", long_running=True),
    ForwardRoute("/api/v1/images", "image_service"),
    ForwardRoute("/api/v1/generations", "image_service", long_running=True),
)

FORWARDED_SERVICES: tuple[str, ...] = tuple(dict.fromkeys(route.service for route in FORWARD_ROUTES))

# RFC 9110 §7.6.1 connection-specific headers, plus those the proxy sets itself.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers the proxy replaces: the Host is the upstream's, Expect is answered hop by hop.
_REQUEST_REPLACED: frozenset[str] = frozenset({"host", "expect", "x-request-id", "x-forwarded-for"})
# The suite's own middleware adds X-Request-ID (and the app server its Date/Server) to the answer.
_RESPONSE_REPLACED: frozenset[str] = frozenset({"x-request-id", "date", "server"})


def has_dot_segments(path: str) -> bool:
    """Whether ``path`` holds a ``.`` or ``..`` segment, percent-encoded (even twice) or not.

    Such a path is never forwarded: an HTTP client or the upstream would resolve it after the
    routing decision was made on the unresolved text (docs/api.md §6)."""
    text = path
    for _ in range(3):
        decoded = urllib.parse.unquote(text)
        if decoded == text:
            break
        text = decoded
    return any(segment in (".", "..") for segment in text.replace("\\", "/").split("/"))


def route_for(path: str, routes: Iterable[ForwardRoute] = FORWARD_ROUTES) -> ForwardRoute | None:
    """The forwarding route of ``path``, or None when the path is not forwarded (dot segments
    included: the caller answers 404)."""
    if has_dot_segments(path):
        return None
    for route in routes:
        if route.matches(path):
            return route
    return None


def upstream_for(path: str, routes: Iterable[ForwardRoute] = FORWARD_ROUTES) -> str | None:
    """The service that owns ``path``, or None when the path is not forwarded."""
    route = route_for(path, routes)
    return route.service if route is not None else None


def read_timeout_for(route: ForwardRoute | None, timeout_seconds: float, long_timeout_seconds: float) -> float:
    """The read timeout of a forwarded request: the longest silence allowed from the upstream,
    before its first byte and between two chunks (an SSE stream may run for any length of time
    as long as it keeps sending). Model calls get the long one."""
    if route is not None and route.long_running:
        return max(timeout_seconds, long_timeout_seconds)
    return timeout_seconds


def _connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Headers that the ``Connection`` header declares hop-by-hop for this message."""
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


def forward_request_headers(
    headers: Iterable[tuple[str, str]],
    *,
    client_host: str | None,
    request_id: str,
    scheme: str = "http",
) -> list[tuple[str, str]]:
    """Headers to send upstream: hop-by-hop ones dropped, ``Authorization`` and the rest kept,
    ``X-Forwarded-For`` appended with the client, ``X-Request-ID`` set, the original host and
    scheme passed as ``X-Forwarded-Host`` / ``X-Forwarded-Proto``."""
    headers = list(headers)
    drop = HOP_BY_HOP | _REQUEST_REPLACED | _connection_named(headers)
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    host = None
    for name, value in headers:
        lower = name.lower()
        if lower == "x-forwarded-for":
            forwarded_for.extend(part.strip() for part in value.split(",") if part.strip())
        elif lower == "host":
            host = value
        if lower in drop or lower in ("x-forwarded-host", "x-forwarded-proto"):
            continue
        out.append((name, value))
    # The app server may already have put the proxy-headers client in place of the peer.
    if client_host and (not forwarded_for or forwarded_for[-1] != client_host):
        forwarded_for.append(client_host)
    if forwarded_for:
        out.append(("X-Forwarded-For", ", ".join(forwarded_for)))
    if host:
        out.append(("X-Forwarded-Host", host))
    out.append(("X-Forwarded-Proto", scheme))
    out.append(("X-Request-ID", request_id))
    return out


def forward_response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers to pass back to the client: hop-by-hop ones and those the proxy sets dropped;
    repeated headers (``Set-Cookie``) kept."""
    headers = list(headers)
    drop = HOP_BY_HOP | _RESPONSE_REPLACED | _connection_named(headers)
    return [(name, value) for name, value in headers if name.lower() not in drop]


def upstream_url(base_url: str, path: str, query_string: str = "") -> str:
    """The upstream address of a forwarded request (path and query passed through unchanged)."""
    url = base_url.rstrip("/") + path
    return f"{url}?{query_string}" if query_string else url


def upstream_unreachable(service: str, base_url: str) -> ServiceUnavailable:
    """503 service_unavailable: the upstream refused or could not be reached."""
    return ServiceUnavailable(
        f"{service} is unreachable at {base_url}; start it or set {service.upper()}_URL",
        extra={"service": service},
    )


def upstream_timed_out(service: str, base_url: str, seconds: float) -> UpstreamTimeout:
    """504 upstream_timeout: the upstream did not answer within the forwarding timeout."""
    return UpstreamTimeout(
        f"{service} did not answer within {seconds:g}s ({base_url})",
        extra={"service": service},
    )


def upstream_failed(service: str, reason: str) -> UpstreamError:
    """502 upstream_error: the upstream answered with something that is not HTTP."""
    return UpstreamError(f"{service} failed: {reason}", extra={"service": service})


# ---------------------------------------------------------------- the ASGI face


@dataclass(frozen=True, slots=True)
class ForwardingConfig:
    """Where each service lives and how long to wait for it."""

    upstreams: Mapping[str, str]
    timeout_seconds: float = 30.0
    # Model calls (``ForwardRoute.long_running``).
    long_timeout_seconds: float = MODEL_CALL_BUDGET_SECONDS
    connect_timeout_seconds: float = 2.0
    max_connections: int = 200
    max_body_bytes: int = 64 * 1024 * 1024


__all__ = [
    "FORWARDED_SERVICES",
    "FORWARD_ROUTES",
    "HOP_BY_HOP",
    "ForwardRoute",
    "ForwardingConfig",
    "forward_request_headers",
    "forward_response_headers",
    "has_dot_segments",
    "read_timeout_for",
    "route_for",
    "upstream_failed",
    "upstream_for",
    "upstream_timed_out",
    "upstream_unreachable",
    "upstream_url",
]
