"""The WSGI/Flask forwarding proxy, used by web_service.

The rules (routing table, hop-by-hop filtering, ``X-Forwarded-For`` / ``X-Request-ID`` passing,
the 503/504/502 bodies) are ``common.forwarding_rules``, shared with the ASGI proxy; this module
only adds a sync transport: one pooled ``httpx.Client`` that streams both ways. The
upstream exchange is opened *inside* the response generator (wrapped in ``stream_with_context``)
so the stream lives exactly as long as Flask iterates the body; each chunk is handed to the WSGI
server as it arrives, so Server-Sent Events pass unbuffered.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from flask import Request, Response, stream_with_context
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from common.errors import NotFound, PayloadTooLarge, RequestTimeout
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

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 1024


@contextlib.contextmanager
def upstream_errors(service: str, base_url: str, timeout_seconds: float) -> Iterator[None]:
    """Turn transport failures of a call to ``service`` into the errors of docs/api.md §4 (503/504/502)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise upstream_timed_out(service, base_url, timeout_seconds) from exc
    except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
        if isinstance(exc, httpx.ConnectError):
            raise upstream_unreachable(service, base_url) from exc
        raise upstream_failed(service, type(exc).__name__) from exc
    except httpx.TransportError as exc:
        raise upstream_failed(service, type(exc).__name__) from exc


class ClientStalled(Exception):
    """Reading the client's body failed mid-way (read timeout or disconnect)."""


def raw_request_path(request: Request) -> str:
    """The request path as the client encoded it (``%2F`` stays ``%2F``)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        return str(raw).split("?", 1)[0]
    return urllib.parse.quote(request.path)


class WsgiForwarder:
    """Forwards a Flask request to the service that owns its path, streaming both ways.

    ``drop_request_headers`` removes browser-only headers (the session cookie, the CSRF header)
    before the shared rules run; ``token`` replaces any ``Authorization`` with the given bearer.
    """

    def __init__(
        self,
        config: ForwardingConfig,
        routes: tuple[ForwardRoute, ...] = FORWARD_ROUTES,
        *,
        drop_request_headers: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.routes = routes
        self.drop_request_headers = frozenset(h.lower() for h in drop_request_headers) | {"authorization"}
        self.client = httpx.Client(
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            limits=httpx.Limits(
                max_connections=config.max_connections, max_keepalive_connections=config.max_connections
            ),
            follow_redirects=False,
            trust_env=False,
        )

    def close(self) -> None:
        self.client.close()

    def base_url(self, service: str) -> str:
        if service not in self.config.upstreams:
            raise upstream_unreachable(service, "(not configured)")
        return self.config.upstreams[service]

    def forward(self, request: Request, *, request_id: str, token: str | None = None) -> Response:
        """Forward ``request``; the answer streams back as the upstream sends it."""
        route = route_for(request.path, self.routes)
        if route is None:
            raise NotFound(f"No service serves {request.path}")
        service = route.service
        read_timeout = read_timeout_for(route, self.config.timeout_seconds, self.config.long_timeout_seconds)
        base_url = self.base_url(service)
        incoming = [(k, v) for k, v in request.headers.items() if k.lower() not in self.drop_request_headers]
        headers = forward_request_headers(
            incoming, client_host=request.remote_addr, request_id=request_id, scheme=request.scheme
        )
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        has_body = request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        body = self._request_body(request) if has_body else None
        url = upstream_url(base_url, raw_request_path(request), request.query_string.decode("latin-1"))
        exchange = stream_with_context(
            self._exchange(request.method, url, headers, body, service, base_url, read_timeout)
        )
        upstream: httpx.Response = next(exchange)  # opens the upstream stream inside the generator
        response = Response(
            exchange,
            status=upstream.status_code,
            headers=forward_response_headers(upstream.headers.multi_items()),
            direct_passthrough=True,
        )
        if "content-type" not in upstream.headers:
            del response.headers["Content-Type"]
        elif upstream.headers["content-type"].startswith("text/event-stream"):
            response.headers.setdefault("X-Accel-Buffering", "no")  # tell a fronting proxy not to buffer
        return response

    def _request_body(self, request: Request) -> Iterator[bytes]:
        try:
            stream = request.stream  # checks the declared length against the request's limit
        except RequestEntityTooLarge as exc:
            raise PayloadTooLarge(f"Request body exceeds {request.max_content_length} bytes") from exc

        def _chunks() -> Iterator[bytes]:
            try:
                while chunk := stream.read(_CHUNK_BYTES):
                    yield chunk
            except (OSError, ClientDisconnected) as exc:  # stalled past the read timeout, or left
                raise ClientStalled from exc

        return _chunks()

    def _exchange(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: Iterator[bytes] | None,
        service: str,
        base_url: str,
        read_timeout: float,
    ) -> Iterator[Any]:
        """Yields the upstream response first (status and headers), then its body chunks.
        ``read_timeout`` is the longest silence allowed (model calls get the long one)."""
        timeout = httpx.Timeout(read_timeout, connect=self.config.connect_timeout_seconds)
        with upstream_errors(service, base_url, read_timeout):
            try:
                upstream = self.client.send(
                    self.client.build_request(method, url, headers=headers, content=body, timeout=timeout),
                    stream=True,
                )
            except RequestEntityTooLarge as exc:  # a chunked body ran over the limit mid-way
                raise PayloadTooLarge("Request body too large") from exc
            except ClientStalled as exc:
                # The upstream request is abandoned with it: httpx closes that connection.
                raise RequestTimeout(
                    "The request body stopped arriving before it was complete", headers={"Connection": "close"}
                ) from exc
        try:
            yield upstream
            if method == "HEAD":
                return
            try:
                yield from upstream.iter_raw()
            except httpx.HTTPError as exc:
                # Headers are gone already: the only honest signal left is a broken connection.
                logger.warning("%s broke off its answer mid-way: %s", service, type(exc).__name__)
                raise
        finally:
            upstream.close()


__all__ = ["WsgiForwarder", "raw_request_path", "upstream_errors"]
