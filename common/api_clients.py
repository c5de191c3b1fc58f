"""Inter-service HTTP: one ``ServiceClient`` per upstream service (pooled keep-alive connections,
explicit timeouts). It passes the caller's bearer token and the current ``X-Request-ID`` on every
call, and turns "the other side is down" into 503 and "too slow" into 504 in the error shape (docs/api.md §4).

Transport: aiohttp. httpx (0.28) was measured at 2-8 ms CPU per request with 64 requests in
flight against ~0.18 ms for aiohttp on the same machine, which capped one inter-service hop at
~100-200 req/s. Callers still get an ``httpx.Response`` (buffered body, ``.json()``,
``.status_code``, ``.headers``), so the transport stays an implementation detail of this module.
"""

from __future__ import annotations

import json as jsonlib
from typing import Any

import aiohttp
import httpx

from common.errors import ServiceUnavailable, UpstreamError, UpstreamTimeout
from common.logging_setup import request_id_var


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ServiceClient:
    """A pooled client for one service of the suite, opened and closed by the app's lifespan."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 2.0,
        max_connections: int = 100,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running event loop (aiohttp binds a session to its loop).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                auto_decompress=False,  # httpx.Response decodes by Content-Encoding itself
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def headers_for(self, token: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"X-Request-ID": request_id_var.get()}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if extra:
            headers.update(extra)
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; connection failures → 503, timeouts → 504, a broken answer → 502
        (all ``AppError``). The whole body is read before returning."""
        url = f"{self.base_url}{path}"
        send_headers = self.headers_for(token, headers)
        data: bytes | None = None
        if json is not None:
            data = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
            send_headers.setdefault("Content-Type", "application/json")
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        total = self.timeout if timeout is None else timeout
        client_timeout = aiohttp.ClientTimeout(total=total, sock_connect=min(self.connect_timeout, total))
        try:
            async with self._get_session().request(
                method, url, params=query or None, data=data, headers=send_headers, timeout=client_timeout
            ) as upstream:
                body = await upstream.read()
                response_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers]
                status = upstream.status
        except TimeoutError as exc:  # aiohttp's timeouts (connect included) are TimeoutError subclasses
            raise UpstreamTimeout(f"{self.name} did not answer in time ({self.base_url})") from exc
        except (aiohttp.ClientConnectorError, aiohttp.ClientOSError) as exc:
            raise ServiceUnavailable(
                f"{self.name} is unreachable at {self.base_url}; start it or set {self.name.upper()}_URL"
            ) from exc
        except aiohttp.ClientError as exc:  # disconnected mid-answer, malformed response
            raise UpstreamError(f"{self.name} failed: {type(exc).__name__}") from exc
        return httpx.Response(status, headers=response_headers, content=body, request=httpx.Request(method, url))

    async def json_or_raise(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON; a 5xx from the upstream becomes 502."""
        response = await self.request(method, path, **kwargs)
        if response.status_code >= 500:
            raise UpstreamError(f"{self.name} answered {response.status_code}")
        return response.json()

    async def health(self) -> None:
        response = await self.request("GET", "/health", timeout=2.0)
        if response.status_code != 200:
            raise UpstreamError(f"{self.name} /health answered {response.status_code}")

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
