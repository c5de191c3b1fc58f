"""Typed errors and the one error shape of docs/api.md §4.

Logic raises these; the app factories turn them into
``{"detail": ..., "code": ..., "request_id": ...}``. ``ErrorBody`` and ``error_responses`` are
that shape as OpenAPI documents it (one definition for every FastAPI service).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from pydantic import BaseModel, Field

STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "invalid_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",  # a known path with another method (+ Allow)
    408: "request_timeout",  # web_service: the client stalled sending a forwarded body
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}


def code_for_status(status: int) -> str:
    return STATUS_CODES.get(status, "bad_request" if status < 500 else "internal_error")


def error_body(status: int, detail: Any, request_id: str | None, code: str | None = None) -> dict[str, Any]:
    return {"detail": detail, "code": code or code_for_status(status), "request_id": request_id}


class AppError(Exception):
    """Base of every error that maps to the error shape of docs/api.md §4."""

    status_code = 500
    code = "internal_error"
    default_detail = "Internal server error"

    def __init__(
        self,
        detail: Any = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail if detail is not None else self.default_detail
        if code:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(str(self.detail))

    def body(self, request_id: str | None) -> dict[str, Any]:
        return {**error_body(self.status_code, self.detail, request_id, self.code), **self.extra}


class BadRequest(AppError):
    status_code, code, default_detail = 400, "bad_request", "Bad request"


class NotAuthenticated(AppError):
    """401 with the RFC 6750 challenge: bare ``Bearer`` when no token came."""

    status_code, code, default_detail = 401, "not_authenticated", "Not authenticated"
    challenge = "Bearer"

    def __init__(self, detail: Any = None, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.headers.setdefault("WWW-Authenticate", self.challenge)


class InvalidToken(NotAuthenticated):
    """A bad, revoked or wrong-type token (RFC 6750 ``error="invalid_token"``)."""

    code, default_detail = "invalid_token", "Invalid token"
    challenge = 'Bearer error="invalid_token"'


TOKEN_EXPIRED_DESCRIPTION = "The access token expired"


class TokenExpired(InvalidToken):
    """A well-signed token past its ``exp``: the client refreshes (an access token) or signs in
    again (a refresh token). RFC 6750 names the case in ``error_description``."""

    code, default_detail = "token_expired", "The access token expired; refresh it or sign in again"
    challenge = f'Bearer error="invalid_token", error_description="{TOKEN_EXPIRED_DESCRIPTION}"'

    @classmethod
    def of(cls, token_type: str) -> TokenExpired:
        if token_type == "refresh":
            return cls(
                "The refresh token expired; sign in again",
                headers={
                    "WWW-Authenticate": 'Bearer error="invalid_token", error_description="The refresh token expired"'
                },
            )
        return cls()


class Forbidden(AppError):
    status_code, code, default_detail = 403, "forbidden", "Not allowed"


class NotFound(AppError):
    status_code, code, default_detail = 404, "not_found", "Not found"


class Conflict(AppError):
    status_code, code, default_detail = 409, "conflict", "Conflict"


class RequestTimeout(AppError):
    status_code, code, default_detail = 408, "request_timeout", "The request body did not arrive in time"


class PayloadTooLarge(AppError):
    status_code, code, default_detail = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(AppError):
    status_code, code, default_detail = 415, "unsupported_media_type", "Unsupported media type"


class RateLimited(AppError):
    status_code, code, default_detail = 429, "rate_limited", "Too many requests"

    def __init__(self, retry_after: int, detail: Any = None, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class UpstreamError(AppError):
    status_code, code, default_detail = 502, "upstream_error", "Upstream service failed"


class UpstreamTimeout(AppError):
    status_code, code, default_detail = 504, "upstream_timeout", "Upstream service timed out"


class ServiceUnavailable(AppError):
    status_code, code, default_detail = 503, "service_unavailable", "A dependency is unavailable"


# ---------------------------------------------------------------------------- OpenAPI


class ErrorBody(BaseModel):
    """docs/api.md §4 error shape, as /docs shows it (the app factory's handlers make it)."""

    detail: Any = Field(description="A message, or FastAPI's list of validation errors for 422")
    code: str = Field(
        description="Machine code, e.g. not_found, invalid_token, token_expired, upstream_error, unsupported_media_type"
    )
    request_id: str


# Wording shared by every service; a service adds or overrides its own (``error_responses_with``).
ERROR_DESCRIPTIONS: dict[int, str] = {
    401: "No token (not_authenticated), an expired one (token_expired), or a bad, revoked or wrong-type one "
    "(invalid_token); `WWW-Authenticate: Bearer` says which (RFC 6750)",
    404: "Missing, or not the caller's (not_found)",
}

ErrorResponses = dict[int | str, dict[str, Any]]


def error_responses(*statuses: int, descriptions: Mapping[int, str] = ERROR_DESCRIPTIONS) -> ErrorResponses:
    """OpenAPI ``responses`` documenting docs/api.md §4 errors a route may answer."""
    return {status: {"model": ErrorBody, "description": descriptions[status]} for status in statuses}


def error_responses_with(descriptions: Mapping[int, str]) -> Callable[..., ErrorResponses]:
    """``error_responses`` with a service's own descriptions on top of the shared ones."""
    return partial(error_responses, descriptions={**ERROR_DESCRIPTIONS, **descriptions})
