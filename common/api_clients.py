"""Inter-service HTTP: one ``ServiceClient`` per upstream service (pooled httpx, explicit
timeouts). It passes the caller's bearer token and the current ``X-Request-ID`` on every call, and
turns "the other side is down" into 503 and "too slow" into 504 in the SPEC's error shape."""

from __future__ import annotations

from typing import Any

import httpx

from common.errors import ServiceUnavailable, UpstreamError, UpstreamTimeout
from common.logging_setup import request_id_var


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
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

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
        """Send one request; connection failures → 503, timeouts → 504 (both ``AppError``)."""
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            return await self._client.request(
                method, path, json=json, params=params, headers=self.headers_for(token, headers), **kwargs
            )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{self.name} did not answer in time ({self.base_url})") from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"{self.name} is unreachable at {self.base_url}; start it or set {self.name.upper()}_URL"
            ) from exc

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
        await self._client.aclose()
