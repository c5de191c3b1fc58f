"""The one way tests build an auth header."""

from __future__ import annotations


def bearer(token: str) -> dict[str, str]:
    """``Authorization: Bearer <token>``, as a headers dict."""
    return {"Authorization": f"Bearer {token}"}


def bad_bearers(token: str, refresh_token: str) -> list[dict[str, str]]:
    """Headers a route must refuse with 401: none, the token with its signature reversed, and a
    refresh token in place of the access token."""
    head, payload, signature = token.split(".")
    return [{}, bearer(f"{head}.{payload}.{signature[::-1]}"), bearer(refresh_token)]
