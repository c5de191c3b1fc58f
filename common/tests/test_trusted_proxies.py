"""TRUSTED_PROXIES: which peers' X-Forwarded-For uvicorn believes, with the options ``serve()`` uses,
on a real uvicorn server (the client address is what the login limit counts per)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Request

from common.app_factory import create_app, uvicorn_options
from common.deps import client_address
from common.processes import free_port, port_answers

router = APIRouter()


@router.get("/peer")
async def peer(request: Request) -> dict[str, str]:
    return {"client": client_address(request)}


@contextmanager
def served(make_settings: Callable[..., Any], **overrides: Any) -> Iterator[str]:
    """The app factory's app under uvicorn, run exactly as ``serve()`` runs it, in a thread."""
    settings = make_settings(service="proxy_test", port=free_port(), **overrides)
    app = create_app(
        settings, title="proxy test", routers=[router], use_database=False, use_redis=False, configure_logging=False
    )
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not port_answers("127.0.0.1", settings.port) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _client_seen(url: str, forwarded_for: str) -> str:
    return httpx.get(f"{url}/peer", headers={"X-Forwarded-For": forwarded_for}, timeout=5).json()["client"]


def test_by_default_only_a_proxy_on_this_machine_is_believed(make_settings: Callable[..., Any]) -> None:
    with served(make_settings) as url:
        assert _client_seen(url, "203.0.113.9") == "203.0.113.9"
        # A client cannot smuggle an address past the proxy: the proxy appends the real peer and
        # the rightmost address that is not a trusted proxy counts.
        assert _client_seen(url, "198.51.100.1, 203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize(
    ("trusted", "seen"),
    [
        ("10.0.0.0/8", "127.0.0.1"),  # our peer is not a trusted proxy: the header is ignored
        ("127.0.0.0/8, 172.16.0.0/12", "203.0.113.9"),  # CIDR networks, e.g. a compose network
        ("*", "203.0.113.9"),
    ],
)
def test_trusted_proxies_decides_whose_forwarded_for_counts(
    make_settings: Callable[..., Any], trusted: str, seen: str
) -> None:
    with served(make_settings, trusted_proxies=trusted) as url:
        assert _client_seen(url, "203.0.113.9") == seen


@pytest.mark.parametrize("bad", ["not-an-ip", "10.0.0.0/33", " , "])
def test_a_bad_trusted_proxies_value_stops_start_up_naming_the_key(make_settings: Callable[..., Any], bad: str) -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        make_settings(service="proxy_test", trusted_proxies=bad)
