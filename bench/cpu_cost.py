"""CPU cost per request, in-process: requests go straight into the ASGI app (no sockets to the
app, no load generator competing for the CPU), and the best of several interleaved rounds is
kept. On a busy shared machine this is steadier than req/s, so it is what we use to judge a
change to the hot path (e.g. the verified-token cache of ``common.security``).

    .venv/bin/python -m bench.cpu_cost [--rounds 7] [--requests 500] [--database postgresql]

Paths measured on the bench hop app (built by the common factory, real Redis):
``/health`` (factory overhead), ``/auth`` (JWT + Redis revocation check) with the verified-token
cache on and off; then user_service's ``/api/v1/users/me`` (auth + one database read).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.harness import BENCH_SECRET, BenchEnv, add_database_option


async def _cost_per_request(
    app: Any, state: dict[str, Any], path: str, headers: list[tuple[bytes, bytes]], count: int
) -> float:
    """CPU microseconds per request over ``count`` sequential requests (``state``: the lifespan's,
    copied into each request as uvicorn does)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path.partition("?")[0],
        "raw_path": path.partition("?")[0].encode(),
        "root_path": "",
        "query_string": path.partition("?")[2].encode(),
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    started = time.process_time()
    for _ in range(count):
        await app(dict(scope, state=dict(state)), receive, send)
    elapsed = time.process_time() - started
    if any(s != 200 for s in status):
        raise RuntimeError(f"{path} answered {sorted(set(status))}")
    return elapsed / count * 1e6


async def measure(rounds: int, count: int) -> dict[str, float]:
    from bench.hop_app import build_app
    from common import security
    from common.config import Settings, load_settings

    settings = load_settings(Settings, secret_key=BENCH_SECRET)
    token, _ = security.encode_token(settings, str(uuid.uuid4()), "user", "access")
    bearer = [(b"authorization", f"Bearer {token}".encode())]
    cache = security.verified_access_tokens

    def cache_on() -> None:
        cache.max_entries = 4096

    def cache_off() -> None:
        cache.max_entries = 0
        cache.clear()

    variants: list[tuple[str, str, list[tuple[bytes, bytes]], Callable[[], None]]] = [
        ("factory /health (no auth)", "/health", [], cache_on),
        ("/auth, verified-token cache off", "/auth", bearer, cache_off),
        ("/auth, verified-token cache on", "/auth", bearer, cache_on),
    ]
    app = build_app()
    best = {name: float("inf") for name, *_ in variants}
    async with app.router.lifespan_context(app) as state:
        for _name, path, headers, prepare in variants:  # warm-up
            prepare()
            await _cost_per_request(app, state, path, headers, 50)
        for _ in range(rounds):
            for name, path, headers, prepare in variants:
                prepare()
                best[name] = min(best[name], await _cost_per_request(app, state, path, headers, count))
    cache_on()
    best.update(await measure_users_me(rounds, count, settings))
    return best


async def measure_users_me(rounds: int, count: int, settings: Any) -> dict[str, float]:
    """user_service's ``GET /api/v1/users/me``: auth plus one database read of the user."""
    from common import security
    from user_service.app.accounts import create_user
    from user_service.app.config import UserSettings
    from user_service.app.schemas import UserCreate
    from user_service.main import build_app as build_user_service

    app = build_user_service(load_user_settings(UserSettings), configure_logging=False)
    name = "/api/v1/users/me (user_service)"
    best = float("inf")
    async with app.router.lifespan_context(app) as state:
        async with state["db"].session() as session:
            user = await create_user(session, UserCreate(username=f"cpu_{uuid.uuid4().hex[:8]}", password="x" * 12))
        token, _ = security.encode_token(settings, user.id, "user", "access")
        bearer = [(b"authorization", f"Bearer {token}".encode())]
        await _cost_per_request(app, state, "/api/v1/users/me", bearer, 50)
        for _ in range(rounds):
            best = min(best, await _cost_per_request(app, state, "/api/v1/users/me", bearer, count))
    return {name: best}


def load_user_settings(cls: Any) -> Any:
    from common.config import load_settings

    return load_settings(cls, "user_service")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=500)
    add_database_option(parser)
    args = parser.parse_args(argv)
    with BenchEnv(log_level="WARNING", database=args.database) as env:
        os.environ.update(env.env)
        best = asyncio.run(measure(args.rounds, args.requests))
    print(f"{'path':<36} {'CPU us/request (best of ' + str(args.rounds) + ' rounds)':>40}")
    for name, cost in best.items():
        print(f"{name:<36} {cost:>40.0f}")
    return best


if __name__ == "__main__":
    main()
