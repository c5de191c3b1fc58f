"""The ASGI forwarding proxy, in front of mobile_service (``AsgiForwarder``, ``install_forwarding``);
the rules it follows are ``common.forwarding_rules``, shared with web_service's WSGI proxy.

It streams both ways: the request body goes upstream as the client sends it and the answer comes
back chunk by chunk (SSE works). A client that leaves, mid-upload or mid-answer, closes the
upstream connection at once. Read timeouts are per route and count silence, not total time. The
client is one shared aiohttp ``ClientSession`` (far cheaper than httpx under concurrency).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from multidict import CIMultiDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from yarl import URL

from common.errors import AppError, PayloadTooLarge
from common.forwarding_rules import (
    FORWARD_ROUTES,
    ForwardingConfig,
    ForwardRoute,
    forward_request_headers,
    forward_response_headers,
    read_timeout_for,
    route_for,
    upstream_failed,
    upstream_timed_out,
    upstream_unreachable,
    upstream_url,
)
from common.logging_setup import request_id_var

if TYPE_CHECKING:
    from common.config import Settings

logger = logging.getLogger(__name__)


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


@dataclass
class _Exchange:
    """One forwarded request: where it goes, what it carries, how long silence may last."""

    service: str
    base_url: str
    url: URL
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes] | None
    body_state: _BodyState
    timeout: aiohttp.ClientTimeout
    request_id: str


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
        route = route_for(scope["path"], self.routes)
        service = route.service if route is not None else None
        request_id = scope.setdefault("state", {}).get("request_id") or request_id_var.get()
        if route is None or service not in self.config.upstreams:
            await _send_error(send, request_id, upstream_unreachable(service or "upstream", "(not configured)"))
            return
        if self._session is None:
            await self.open()
        exchange = self._exchange_for(scope, receive, route, request_id)
        response = await self._send_upstream(exchange, scope["method"], send)
        if response is not None:
            async with response:
                await self._relay(response, exchange, scope["method"], send, receive)

    def _exchange_for(self, scope: Scope, receive: Receive, route: ForwardRoute, request_id: str) -> _Exchange:
        """The upstream request for this client request (its body is read as it is sent)."""
        raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        client = scope.get("client")
        headers = forward_request_headers(
            raw_headers, client_host=client[0] if client else None, request_id=request_id, scheme=scope["scheme"]
        )
        has_body = any(
            name.lower() == "transfer-encoding" or (name.lower() == "content-length" and value.strip() not in ("", "0"))
            for name, value in raw_headers
        )
        body_state = _BodyState()
        timeout = self._long_timeout if route.long_running else self._timeout
        base_url = self.config.upstreams[route.service]
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        return _Exchange(
            service=route.service,
            base_url=base_url,
            url=URL(upstream_url(base_url, raw_path, query), encoded=True),
            headers=headers,
            body=self._request_body(receive, body_state) if has_body else None,
            body_state=body_state,
            timeout=timeout,
            request_id=request_id,
        )

    async def _send_upstream(self, exchange: _Exchange, method: str, send: Send) -> aiohttp.ClientResponse | None:
        """The upstream's response, or None once the client has been told why there is none."""
        assert self._session is not None
        service, request_id = exchange.service, exchange.request_id
        try:
            return await self._session.request(
                method,
                exchange.url,
                headers=CIMultiDict(exchange.headers),
                data=exchange.body,
                allow_redirects=False,
                timeout=exchange.timeout,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            read_seconds = exchange.timeout.sock_read or self.config.timeout_seconds
            error: AppError | None = upstream_timed_out(service, exchange.base_url, read_seconds)
        except aiohttp.ClientConnectorError:
            error = upstream_unreachable(service, exchange.base_url)
        except Exception as exc:  # a broken upstream or client body must not become a 500
            error = self._failure(exchange, exc)
        if error is not None:
            await _send_error(send, request_id, error)
        return None

    def _failure(self, exchange: _Exchange, exc: Exception) -> AppError | None:
        if exchange.body_state.client_left:
            logger.info("client left mid-upload; the request to %s was abandoned", exchange.service)
            return None  # nobody to answer
        if exchange.body_state.too_large:
            return PayloadTooLarge(f"Request body exceeds {self.config.max_body_bytes} bytes")
        if not isinstance(exc, aiohttp.ClientError):
            logger.exception("forwarding to %s failed", exchange.service)
        logger.warning("forwarding to %s failed: %s", exchange.service, type(exc).__name__)
        return upstream_failed(exchange.service, type(exc).__name__)

    async def _relay(
        self, response: aiohttp.ClientResponse, exchange: _Exchange, method: str, send: Send, receive: Receive
    ) -> None:
        """Pass the upstream's answer on as it arrives; drop the upstream if the client leaves."""
        upstream_headers = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers)
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in forward_response_headers(upstream_headers)
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if method != "HEAD":
            try:
                # Most answers arrive whole in the first read: no watcher needed for those.
                chunk = await response.content.readany()
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if not response.content.at_eof():
                    # With the request body read (or none), receive() only tells whether the client left.
                    if exchange.body is None or exchange.body_state.done:
                        if not await _stream_until_client_leaves(response, send, receive):
                            logger.info("client left a streamed answer of %s; upstream closed", exchange.service)
                            return
                    else:
                        await _pump(response, send)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Headers are gone already: the only honest signal left is a broken connection.
                logger.warning("%s broke off its answer mid-way: %s", exchange.service, type(exc).__name__)
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


def install_forwarding(app: Any, settings: Settings, forwarder: AsgiForwarder) -> None:
    """Put the forwarding proxy in front of a FastAPI app built by ``common.app_factory``; the
    caller runs the forwarder's ``open``/``aclose`` in the app's lifespan."""
    from starlette.middleware.cors import CORSMiddleware

    from common.app_factory import RequestContextMiddleware, cors_options

    forward_app: ASGIApp = forwarder
    if settings.cors_origin_list:
        forward_app = CORSMiddleware(forward_app, **cors_options(settings))
    forward_app = RequestContextMiddleware(
        forward_app, service=settings.service_name, max_body_bytes=forwarder.config.max_body_bytes
    )
    app.add_middleware(ForwardingDispatch, forward_app=forward_app, routes=forwarder.routes)


__all__ = ["AsgiForwarder", "ForwardingDispatch", "install_forwarding"]
