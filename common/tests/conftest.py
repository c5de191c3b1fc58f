"""Fixtures of the common unit tests: a tiny real upstream served by uvicorn in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from common.processes import free_port, port_answers

SLOW_SECONDS = 5.0


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"headers": dict(request.headers), "body": body.decode(), "query": dict(request.query_params)})


async def _slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(SLOW_SECONDS)
    return PlainTextResponse("late")


async def _big(request: Request) -> JSONResponse:
    return JSONResponse({"items": list(range(2000))})


async def _fail(request: Request) -> PlainTextResponse:
    return PlainTextResponse("broken", status_code=500)


UPSTREAM_APP = Starlette(
    middleware=[Middleware(GZipMiddleware, minimum_size=500)],
    routes=[
        Route("/big", _big),
        Route("/health", _health),
        Route("/echo", _echo, methods=["GET", "POST"]),
        Route("/slow", _slow),
        Route("/fail", _fail),
    ],
)


class ThreadedServer:
    """uvicorn serving an ASGI app from a daemon thread of the test process."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"upstream-{self.port}")

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not port_answers("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def tiny_upstream() -> Iterator[str]:
    """Base URL of a real HTTP server with /health, /echo, /slow (5 s), /big (gzip) and /fail (500)."""
    with ThreadedServer(UPSTREAM_APP) as server:
        yield server.url
