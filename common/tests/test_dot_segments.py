"""The forwarders' one path rule (docs/api.md §6): dot segments, encoded or not, are never forwarded."""

from __future__ import annotations

import pytest

from common.forwarding_rules import has_dot_segments, route_for


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/../../../metrics",
        "/api/v1/auth/x/../login",
        "/api/v1/images/.",
        "/api/v1/chat/%2e%2e/%2E%2E/v1/chat/completions",
        "/api/v1/auth/%2e%2e%2f%2e%2e%2fmetrics",
        "/api/v1/auth/%252e%252e/metrics",
        "/api/v1/auth/..\\..\\metrics",
    ],
)
def test_dot_segments_have_no_route(path: str) -> None:
    assert has_dot_segments(path)
    assert route_for(path) is None


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/images/a..b/content", "/api/v1/chat/.hidden"])
def test_names_with_dots_still_route(path: str) -> None:
    assert not has_dot_segments(path)
    assert route_for(path) is not None
