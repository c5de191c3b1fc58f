"""The one forwarding proxy of the suite (SPEC §6): which path goes to which service, and how.

Two layers:

- **Framework-neutral rules** (used by the ASGI face below and by web_service's WSGI face in
  ``common.forwarding_wsgi``): the routing table ``FORWARD_ROUTES`` / ``upstream_for``, hop-by-hop
  header filtering both ways (``forward_request_headers`` / ``forward_response_headers``), the
  upstream URL (``upstream_url``) and the SPEC §4 failures (``upstream_unreachable`` → 503,
  ``upstream_timed_out`` → 504, ``upstream_failed`` → 502).
- **The ASGI face** (``AsgiForwarder`` + ``install_forwarding``), in front of mobile_service. It
  streams both ways: the request body goes upstream as the client sends it (never buffered whole)
  and the response goes back chunk by chunk as it arrives (SSE works). When the client leaves a
  streamed answer, the upstream connection is closed at once so the upstream sees it too. Read
  timeouts are per route (``ForwardRoute.long_running`` model calls get
  ``ForwardingConfig.long_timeout_seconds``) and count silence, not total time. Its HTTP client is one
  shared aiohttp ``ClientSession``: measured in ``bench/bench_forward.py``, httpx's connection pool
  is several times slower under concurrency (its pool scans every connection per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from yarl import URL

from common.errors import AppError, PayloadTooLarge, ServiceUnavailable, UpstreamError, UpstreamTimeout
from common.logging_setup import request_id_var

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- framework-neutral rules


@dataclass(frozen=True, slots=True)
class ForwardRoute:
    """``prefix`` itself and everything below it goes to ``service``. ``long_running`` routes
    (model calls: chat, text tasks, model lists, image generation) get the long read timeout."""

    prefix: str
    service: str
    long_running: bool = False

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")


# SPEC §6: the mobile app's (and the browser's) one base URL forwards these to their owners.
FORWARD_ROUTES: tuple[ForwardRoute, ...] = (
    ForwardRoute("/api/v1/auth", "user_service"),
    ForwardRoute("/api/v1/users", "user_service"),
    ForwardRoute("/api/v1/chat", "llm_service", long_running=True),
    ForwardRoute("/api/v1/text", "llm_service", long_running=True),
    ForwardRoute("/api/v1/models", "llm_service", long_running=True),
    ForwardRoute("/api/v1/usage", "llm_service"),
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
    routing decision was made on the unresolved text (SPEC §6)."""
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
    # Model calls (``ForwardRoute.long_running``): llm_service may take its provider timeout
    # (LLM_TIMEOUT_SECONDS 60 s) × (1 + LLM_MAX_RETRIES 2) plus the SDK's back-off = ~190 s.
    long_timeout_seconds: float = 200.0
    connect_timeout_seconds: float = 2.0
    max_connections: int = 200
    max_body_bytes: int = 64 * 1024 * 1024


class _BodyTooLarge(Exception):
    pass


class _ClientLeft(Exception):
    pass


@dataclass
class _BodyState:
    """What became of the client's body while it was streamed upstream."""

    too_large: bool = False
    done: bool = False
    client_left: bool = False


class AsgiForwarder:
    """An ASGI app that forwards every request it gets to the owning service, streaming both ways.

    Open it in the app's lifespan (``await forwarder.open()``) and close it there (``aclose``).
    """

    def __init__(self, config: ForwardingConfig, routes: tuple[ForwardRoute, ...] = FORWARD_ROUTES) -> None:
        self.config = config
        self.routes = routes
        self._session: aiohttp.ClientSession | None = None
        self._timeout = self._client_timeout(config.timeout_seconds)
        self._long_timeout = self._client_timeout(
            read_timeout_for(ForwardRoute("", "", True), config.timeout_seconds, config.long_timeout_seconds)
        )

    def _client_timeout(self, read_seconds: float) -> aiohttp.ClientTimeout:
        # sock_read is the longest silence between two reads, so a stream never times out
        # while it keeps sending; no total limit.
        return aiohttp.ClientTimeout(
            total=None,
            connect=self.config.connect_timeout_seconds,
            sock_connect=self.config.connect_timeout_seconds,
            sock_read=read_seconds,
        )

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.config.max_connections, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,  # bytes pass through as the upstream encoded them
                cookie_jar=aiohttp.DummyCookieJar(),  # never share one caller's cookies with another
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        route = route_for(path, self.routes)
        service = route.service if route is not None else None
        state = scope.setdefault("state", {})
        request_id = state.get("request_id") or request_id_var.get()
        if service is None or service not in self.config.upstreams:
            await _send_error(send, request_id, upstream_unreachable(service or "upstream", "(not configured)"))
            return
        base_url = self.config.upstreams[service]
        if self._session is None:
            await self.open()
        assert self._session is not None

        raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        client = scope.get("client")
        headers = forward_request_headers(
            raw_headers, client_host=client[0] if client else None, request_id=request_id, scheme=scope["scheme"]
        )
        names = {name.lower() for name, _ in raw_headers}
        has_body = "transfer-encoding" in names or any(
            name.lower() == "content-length" and value.strip() not in ("", "0") for name, value in raw_headers
        )
        body_state = _BodyState()
        body = self._request_body(receive, body_state) if has_body else None
        long_running = route is not None and route.long_running
        timeout = self._long_timeout if long_running else self._timeout
        read_seconds = timeout.sock_read or self.config.timeout_seconds
        query = scope.get("query_string", b"").decode("latin-1")
        url = URL(upstream_url(base_url, scope.get("raw_path", path.encode()).decode("latin-1"), query), encoded=True)

        try:
            response = await self._session.request(
                scope["method"], url, headers=CIMultiDict(headers), data=body, allow_redirects=False, timeout=timeout
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            await _send_error(send, request_id, upstream_timed_out(service, base_url, read_seconds))
            return
        except aiohttp.ClientConnectorError:
            await _send_error(send, request_id, upstream_unreachable(service, base_url))
            return
        except Exception as exc:  # a broken upstream or client body must not become a 500
            if body_state.client_left:
                logger.info("client left mid-upload; the request to %s was abandoned", service)
                return
            if body_state.too_large:
                limit = self.config.max_body_bytes
                await _send_error(send, request_id, PayloadTooLarge(f"Request body exceeds {limit} bytes"))
                return
            if not isinstance(exc, aiohttp.ClientError):
                logger.exception("forwarding to %s failed", service)
            logger.warning("forwarding to %s failed: %s", service, type(exc).__name__)
            await _send_error(send, request_id, upstream_failed(service, type(exc).__name__))
            return

        async with response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in forward_response_headers(
                            (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers
                        )
                    ],
                }
            )
            if scope["method"] != "HEAD":
                try:
                    # Most answers arrive whole in the first read: no watcher needed for those.
                    chunk = await response.content.readany()
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if not response.content.at_eof():
                        # The request body is read (or there was none): from now on receive()
                        # only tells whether the client went away.
                        if body is None or body_state.done:
                            if not await _stream_until_client_leaves(response, send, receive):
                                logger.info("client left a streamed answer of %s; upstream closed", service)
                                return
                        else:
                            await _pump(response, send)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Headers are gone already: the only honest signal left is a broken connection.
                    logger.warning("%s broke off its answer mid-way: %s", service, type(exc).__name__)
                    raise
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _request_body(self, receive: Receive, state: _BodyState) -> AsyncIterator[bytes]:
        """The client's body as it arrives (backpressure comes from the app server's receive)."""
        while True:
            try:
                message = await receive()
            except StarletteHTTPException as exc:  # the app's body limit tripped mid-stream
                if exc.status_code == 413:
                    state.too_large = True
                    raise _BodyTooLarge from exc
                raise
            if message["type"] == "http.disconnect":
                # The client left mid-body: fail the upstream request so aiohttp drops that
                # connection at once, instead of the upstream waiting for bytes that never come.
                state.client_left = True
                raise _ClientLeft
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                state.done = True
                return


async def _pump(response: aiohttp.ClientResponse, send: Send) -> None:
    async for chunk in response.content.iter_any():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _stream_until_client_leaves(response: aiohttp.ClientResponse, send: Send, receive: Receive) -> bool:
    """Pass the rest of the answer on while watching the client. True when the answer was
    passed on whole; False when the client went away first: then the upstream connection is
    closed at once, so the upstream sees the disconnect too (llm_service then stops the
    provider's stream and keeps the partial reply marked incomplete)."""
    pump = asyncio.ensure_future(_pump(response, send))
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not pump.done():
            response.close()  # drops the connection instead of returning it to the pool
            pump.cancel()
        watcher.cancel()
        for task in (pump, watcher):
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, TimeoutError, OSError):
                await task
    if pump.cancelled():
        return False
    pump.result()  # an upstream failure mid-way is raised here
    return True


async def _send_error(send: Send, request_id: str, exc: AppError) -> None:
    body = orjson.dumps(exc.body(request_id))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


@dataclass(frozen=True, slots=True)
class _RouteTemplate:
    """What the access log and metrics read as the route of a forwarded request."""

    path: str


class ForwardingDispatch:
    """Outer ASGI middleware: forwarded paths go straight to the forwarder, wrapped in the app's own
    request-id/access-log/metrics middleware (and CORS when configured), without the framework's
    routing and dependency machinery in between (measured in ``bench/bench_forward.py``). They
    get the forwarding body limit, not the service's own: an image upload is judged by
    image_service, not by the records API's JSON limit. Everything else goes to the app."""

    def __init__(self, app: ASGIApp, forward_app: ASGIApp, routes: tuple[ForwardRoute, ...] = FORWARD_ROUTES) -> None:
        self.app = app
        self.forward_app = forward_app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = route_for(scope["path"], self.routes)
            if route is not None:
                scope["route"] = _RouteTemplate(route.prefix + "/*")
                await self.forward_app(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_forwarding(app: Any, config: ForwardingConfig) -> AsgiForwarder:
    """Put the forwarding proxy in front of a FastAPI app built by ``common.app_factory``;
    returns the forwarder, whose ``open``/``aclose`` the caller runs in the app's lifespan."""
    from starlette.middleware.cors import CORSMiddleware

    from common.app_factory import RequestContextMiddleware, cors_options

    settings = app.state.settings
    forwarder = AsgiForwarder(config)
    forward_app: ASGIApp = forwarder
    if settings.cors_origin_list:
        forward_app = CORSMiddleware(forward_app, **cors_options(settings))
    forward_app = RequestContextMiddleware(
        forward_app, service=settings.service_name, max_body_bytes=config.max_body_bytes
    )
    app.add_middleware(ForwardingDispatch, forward_app=forward_app, routes=forwarder.routes)
    app.state.forwarder = forwarder
    return forwarder


__all__ = [
    "FORWARDED_SERVICES",
    "FORWARD_ROUTES",
    "HOP_BY_HOP",
    "AsgiForwarder",
    "ForwardRoute",
    "ForwardingConfig",
    "ForwardingDispatch",
    "forward_request_headers",
    "forward_response_headers",
    "install_forwarding",
    "read_timeout_for",
    "route_for",
    "upstream_failed",
    "upstream_for",
    "upstream_timed_out",
    "upstream_unreachable",
    "upstream_url",
]
