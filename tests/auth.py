"""The one way tests build an auth header."""

from __future__ import annotations


def bearer(token: str) -> dict[str, str]:
    """``Authorization: Bearer <token>``, as a headers dict."""
    return {"Authorization": f"Bearer {token}"}
