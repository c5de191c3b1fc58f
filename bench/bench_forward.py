"""Forwarding speed (issue 3, item 7): what one hop through the proxy costs, and which HTTP client
carries it.

Started on free loopback ports, each its own process:

1. a bare ASGI app under uvicorn (the upstream, and the baseline when called directly);
2. a minimal ASGI proxy on a shared ``httpx.AsyncClient`` (streaming, the same header rules);
3. the same proxy on a shared aiohttp ``ClientSession`` (``common.forwarding.AsgiForwarder``
   alone, no framework);
4. the real ``mobile_service/main.py`` forwarding ``/api/v1/auth/*`` to the bare app;
5. the real ``user_service`` answered directly and through the real mobile_service
   (``GET /api/v1/users/me`` with a real token: JWT, Redis and a row each time).

This process is the load generator (aiohttp, ``--concurrency`` connections). For each target it
prints throughput, p50/p99 latency, the p50 the hop adds over calling the upstream directly,
and the CPU the proxy process spent per request (steadier than req/s on a shared machine).

Run: ``.venv/bin/python bench/bench_forward.py`` (about a minute), e.g. ``--seconds 5 --concurrency 64``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.bench_records import SECRET, Result, load, wait_healthy  # noqa: E402
from common.local_redis import provide_redis  # noqa: E402
from common.processes import free_port, popen_child, stop_process  # noqa: E402

PATH = "/api/v1/auth/bench"


async def _health(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def serve_httpx_proxy(port: int, upstream: str) -> None:
    """The forwarding rules of ``common.forwarding`` on a shared httpx client, streaming both ways."""
    import httpx
    import uvicorn

    from common.forwarding import forward_request_headers, forward_response_headers, upstream_url

    client = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=2.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/health":
            await _health(send)
            return
        headers = forward_request_headers(
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            client_host=scope["client"][0],
            request_id=uuid.uuid4().hex,
        )
        request = client.build_request(
            scope["method"], upstream_url(upstream, scope["path"], scope["query_string"].decode()), headers=headers
        )
        response = await client.send(request, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.lower().encode(), v.encode())
                        for k, v in forward_response_headers(response.headers.multi_items())
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_aiohttp_proxy(port: int, upstream: str) -> None:
    """``common.forwarding.AsgiForwarder`` as the whole app (no framework around it)."""
    import uvicorn

    from common.forwarding import AsgiForwarder, ForwardingConfig

    forwarder = AsgiForwarder(ForwardingConfig(upstreams={"user_service": upstream}))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/health":
            await _health(send)
        elif scope["type"] == "http":
            await forwarder(scope, receive, send)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def child(argv: list[str], env: dict[str, str] | None = None) -> Any:
    return popen_child([sys.executable, *argv], env or dict(os.environ), pipe_output=False)


def service_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SERVICE_URL") and k not in ("PORT", "HOST")}
    env.update({"SECRET_KEY": SECRET, "LOG_DIR": str(Path(tempfile.gettempdir()) / "bench-logs"), **extra})
    return env


def report(results: list[Result], direct: Result, proxies: list[Result]) -> None:
    for result in results:
        print(result.line())
    for proxy in proxies:
        added = proxy.pct(0.5) - direct.pct(0.5)
        print(
            f"  {proxy.name}: {proxy.rps / direct.rps:.2f} of direct throughput, "
            f"adds {added:+.2f} ms p50 at this concurrency"
        )


def register_and_login(base: str) -> str:
    import httpx

    name = f"bench_{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple"
    httpx.post(f"{base}/api/v1/auth/register", json={"username": name, "password": password}).raise_for_status()
    tokens = httpx.post(f"{base}/api/v1/auth/login", json={"username": name, "password": password})
    tokens.raise_for_status()
    return tokens.json()["access_token"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, port, upstream = args.serve
        {"httpx": serve_httpx_proxy, "aiohttp": serve_aiohttp_proxy}[kind](int(port), upstream)
        return

    redis = provide_redis(None)
    redis_url = redis.url.rsplit("/", 1)[0] + "/12" if redis.url.count("/") > 2 else redis.url + "/12"
    tmp = Path(tempfile.mkdtemp(prefix="bench-forward-"))
    ports = {name: free_port() for name in ("bare", "httpx", "aiohttp", "mobile", "user", "mobile_user")}
    bare_url = f"http://127.0.0.1:{ports['bare']}"
    user_url = f"http://127.0.0.1:{ports['user']}"
    database = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'app.db'}", "REDIS_URL": redis_url}
    procs = {
        "bare": child([str(REPO_ROOT / "bench" / "bench_records.py"), "--serve-baseline", str(ports["bare"])]),
        "httpx": child([__file__, "--serve", "httpx", str(ports["httpx"]), bare_url]),
        "aiohttp": child([__file__, "--serve", "aiohttp", str(ports["aiohttp"]), bare_url]),
        "mobile": child(
            [str(REPO_ROOT / "mobile_service" / "main.py")],
            service_env({"MOBILE_SERVICE_PORT": str(ports["mobile"]), "USER_SERVICE_URL": bare_url, **database}),
        ),
        "user": child(
            [str(REPO_ROOT / "user_service" / "main.py")],
            service_env({"USER_SERVICE_PORT": str(ports["user"]), **database}),
        ),
    }
    procs["mobile_user"] = child(
        [str(REPO_ROOT / "mobile_service" / "main.py")],
        service_env({"MOBILE_SERVICE_PORT": str(ports["mobile_user"]), "USER_SERVICE_URL": user_url, **database}),
    )
    try:
        for port in ports.values():
            wait_healthy(f"http://127.0.0.1:{port}")
        c, s = args.concurrency, args.seconds

        def run(name: str, target: str, url: str, headers: dict[str, str] | None = None) -> Result:
            return asyncio.run(load(name, [url], headers or {}, c, s, server_pid=procs[target].pid))

        print(f"one forwarding hop to a bare ASGI upstream, {c} connections, {s:g}s each (same run):")
        direct = run("bare ASGI upstream, direct", "bare", f"{bare_url}{PATH}")
        via_httpx = run("minimal proxy, httpx client", "httpx", f"http://127.0.0.1:{ports['httpx']}{PATH}")
        via_aiohttp = run("minimal proxy, aiohttp client", "aiohttp", f"http://127.0.0.1:{ports['aiohttp']}{PATH}")
        via_mobile = run("mobile_service (full app)", "mobile", f"http://127.0.0.1:{ports['mobile']}{PATH}")
        report([direct, via_httpx, via_aiohttp, via_mobile], direct, [via_httpx, via_aiohttp, via_mobile])

        token = register_and_login(user_url)
        auth = {"Authorization": f"Bearer {token}"}
        print(f"\nGET /api/v1/users/me on the real user_service, {c} connections:")
        user_direct = run("user_service, direct", "user", f"{user_url}/api/v1/users/me", auth)
        user_hop = run(
            "through mobile_service", "mobile_user", f"http://127.0.0.1:{ports['mobile_user']}/api/v1/users/me", auth
        )
        report([user_direct, user_hop], user_direct, [user_hop])
    finally:
        for proc in procs.values():
            stop_process(proc, grace=5.0)
        redis.stop()


if __name__ == "__main__":
    main()
