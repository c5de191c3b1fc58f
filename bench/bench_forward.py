"""Forwarding speed (issue 3, item 7), on ``bench/harness.py``: what one hop through the proxy
costs, and which HTTP client carries it.

Each its own process on a free loopback port:

1. the bare ASGI baseline (``bench.baseline_app``): the upstream, and the baseline when called directly;
2. a minimal ASGI proxy on a shared ``httpx.AsyncClient`` (streaming, the same header rules);
3. the same proxy on a shared aiohttp ``ClientSession``: ``common.forwarding.AsgiForwarder`` alone;
4. the real ``mobile_service`` forwarding ``/api/v1/auth/*`` to the baseline;
5. the real ``user_service`` (``GET /api/v1/users/me`` with a real token) directly and through a
   real mobile_service.

It prints the harness table (req/s, p50, p99, ratio to the baseline), the server CPU per request
of each target (steadier than req/s on a shared machine) and the p50 a hop adds when requests go
one at a time (no queueing).

Run: ``.venv/bin/python -m bench.bench_forward`` (about two minutes), e.g. ``--duration 5``;
``--database postgresql`` puts user_service on a PostgreSQL database of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any

from bench.bench_records import measured, print_cpu
from bench.harness import BenchEnv, add_database_option, http_json, print_table, start_app, start_service

PATH = "/api/v1/auth/bench"


async def _health(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def httpx_proxy() -> Any:
    """The forwarding rules of ``common.forwarding`` on a shared httpx client, streaming both ways
    (``uvicorn bench.bench_forward:httpx_proxy --factory`` with ``BENCH_UPSTREAM`` set)."""
    import httpx

    from common.forwarding_rules import forward_request_headers, forward_response_headers, upstream_url

    upstream = os.environ["BENCH_UPSTREAM"]
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=2.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["path"] == "/health":
            await _health(send)
            return
        headers = forward_request_headers(
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            client_host=scope["client"][0],
            request_id=uuid.uuid4().hex,
        )
        url = upstream_url(upstream, scope["path"], scope["query_string"].decode())
        response = await client.send(client.build_request(scope["method"], url, headers=headers), stream=True)
        try:
            pairs = forward_response_headers(response.headers.multi_items())
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in pairs],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    return app


def aiohttp_proxy() -> Any:
    """``common.forwarding.AsgiForwarder`` as the whole app, no framework around it."""
    from common.forwarding import AsgiForwarder
    from common.forwarding_rules import ForwardingConfig

    forwarder = AsgiForwarder(ForwardingConfig(upstreams={"user_service": os.environ["BENCH_UPSTREAM"]}))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["path"] == "/health":
            await _health(send)
        else:
            await forwarder(scope, receive, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run, after the warm-up")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL (INFO: access log on)")
    add_database_option(parser)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    c, d, w = args.connections, args.duration, args.warmup

    with BenchEnv(log_level=args.log_level, database=args.database) as env, start_app("bench.baseline_app:app") as base:
        upstream = {"BENCH_UPSTREAM": base.url}
        with (
            start_app("bench.bench_forward:httpx_proxy", env=upstream, factory=True, health_path="/health") as hx,
            start_app("bench.bench_forward:aiohttp_proxy", env=upstream, factory=True, health_path="/health") as ah,
            start_service("mobile_service", {**env.env, "USER_SERVICE_URL": base.url}) as mobile,
        ):
            print(f"one forwarding hop to the bare ASGI baseline, {c} connections:")
            rows = [
                measured("bare ASGI baseline, direct", base, f"{base.url}{PATH}", {}, c, d, w),
                measured("minimal proxy, httpx client", hx, f"{hx.url}{PATH}", {}, c, d, w),
                measured("minimal proxy, aiohttp client", ah, f"{ah.url}{PATH}", {}, c, d, w),
                measured("mobile_service (full app)", mobile, f"{mobile.url}{PATH}", {}, c, d, w),
            ]
            print_table([r for r, _ in rows], rows[0][0])
            print_cpu(rows)

            print("\none request at a time (no queueing):")
            alone = [
                measured("baseline, 1 connection", base, f"{base.url}{PATH}", {}, 1, d, w),
                measured("mobile_service, 1 connection", mobile, f"{mobile.url}{PATH}", {}, 1, d, w),
            ]
            print_table([r for r, _ in alone], alone[0][0])
            added = alone[1][0].p50_ms - alone[0][0].p50_ms
            print(f"the hop through mobile_service adds {added:+.2f} ms p50")

        with (
            start_service("user_service", env.env) as user,
            start_service("mobile_service", env.with_urls(user_service=user)) as mobile,
        ):
            name, password = f"bench_{uuid.uuid4().hex[:8]}", "correct horse battery staple"
            http_json("POST", f"{user.url}/api/v1/auth/register", {"username": name, "password": password})
            tokens = http_json("POST", f"{user.url}/api/v1/auth/login", {"username": name, "password": password})
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            print(f"\nGET /api/v1/users/me on the real user_service, {c} connections:")
            rows = [
                measured("user_service, direct", user, f"{user.url}/api/v1/users/me", auth, c, d, w),
                measured("through mobile_service", mobile, f"{mobile.url}/api/v1/users/me", auth, c, d, w),
            ]
            print_table([r for r, _ in rows], rows[0][0])
            print_cpu(rows)


if __name__ == "__main__":
    main()
