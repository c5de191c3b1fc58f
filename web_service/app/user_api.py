"""web_service's own calls to user_service (sign-up, sign-in, refresh, sign-out, profile).

Flask is synchronous, so these go through the WSGI forwarder's pooled ``httpx.Client`` with the
same failure rules as forwarding (503 unreachable, 504 slow). An error answer of user_service is
re-raised as the matching typed error with user_service's detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from common.errors import AppError, UpstreamError
from common.forwarding_wsgi import WsgiForwarder, upstream_errors

SERVICE = "user_service"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class UpstreamAnswer(AppError):
    """An error answer of another service, passed on with its status, code and detail."""

    def __init__(self, status: int, detail: Any, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, code=code, headers=headers)
        self.status_code = status


def raise_for_answer(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    if response.status_code >= 500:
        raise UpstreamError(f"{SERVICE} answered {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("detail", response.reason_phrase) if isinstance(body, dict) else response.reason_phrase
    code = body.get("code", "bad_request") if isinstance(body, dict) else "bad_request"
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "www-authenticate")}
    raise UpstreamAnswer(response.status_code, detail, str(code), headers)


class UserApi:
    """The handful of user_service endpoints the browser session needs."""

    def __init__(self, forwarder: WsgiForwarder) -> None:
        self.forwarder = forwarder

    def _call(self, method: str, path: str, *, request_id: str, token: str | None = None, **kwargs: Any) -> Any:
        base_url = self.forwarder.base_url(SERVICE)
        headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with upstream_errors(SERVICE, base_url, self.forwarder.config.timeout_seconds):
            response = self.forwarder.client.request(method, f"{base_url}{path}", headers=headers, **kwargs)
        raise_for_answer(response)
        return response.json() if response.content else None

    def register(self, username: str, password: str, *, request_id: str, email: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "password": password}
        if email:
            body["email"] = email
        return self._call("POST", "/api/v1/auth/register", json=body, request_id=request_id)

    def login(self, username: str, password: str, *, request_id: str, client_host: str | None) -> TokenPair:
        headers = {"X-Forwarded-For": client_host} if client_host else {}
        body = self._call(
            "POST",
            "/api/v1/auth/token",
            data={"username": username, "password": password},
            headers=headers,
            request_id=request_id,
        )
        return _pair(body)

    def refresh(self, refresh_token: str, *, request_id: str) -> TokenPair:
        body = self._call("POST", "/api/v1/auth/refresh", json={"refresh_token": refresh_token}, request_id=request_id)
        return _pair(body)

    def logout(self, access_token: str, refresh_token: str | None, *, request_id: str) -> None:
        payload = {"refresh_token": refresh_token} if refresh_token else None
        self._call("POST", "/api/v1/auth/logout", json=payload, token=access_token, request_id=request_id)

    def me(self, access_token: str, *, request_id: str) -> dict[str, Any]:
        return self._call("GET", "/api/v1/users/me", token=access_token, request_id=request_id)


def _pair(body: Any) -> TokenPair:
    try:
        return TokenPair(str(body["access_token"]), str(body["refresh_token"]), int(body.get("expires_in", 900)))
    except (KeyError, TypeError, ValueError) as exc:
        raise UpstreamError(f"{SERVICE} answered a token response without tokens") from exc
