"""A tiny round-robin HTTP load balancer, for the replica tests and local trials of replicas.

    python -m deploy.round_robin --port 9000 --upstream http://127.0.0.1:8102 --upstream http://127.0.0.1:8202

Each request goes to the next replica in turn (per request, not per connection), streamed both
ways, with the suite's forwarding header rules (``common.forwarding``: hop-by-hop headers dropped,
``X-Forwarded-For`` / ``X-Request-ID`` passed). A replica that refuses the connection is skipped
for that request. Every response says which replica served it in ``X-Replica-<name>``. It is a
test tool: in production put a real load balancer (nginx, Traefik, a cloud LB) in front.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import uuid

import aiohttp
from aiohttp import web

from common.errors import error_body
from common.forwarding_rules import forward_request_headers, forward_response_headers, upstream_url

CHUNK_BYTES = 64 * 1024


class RoundRobin:
    """Hands each request to the next upstream; owns one pooled aiohttp client."""

    def __init__(self, name: str, upstreams: list[str], timeout_seconds: float = 60.0) -> None:
        self.name = name
        self.upstreams = [u.rstrip("/") for u in upstreams]
        self._turn = itertools.cycle(range(len(self.upstreams)))
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=timeout_seconds)
        self.session: aiohttp.ClientSession | None = None

    async def open(self, _app: web.Application) -> None:
        self.session = aiohttp.ClientSession(timeout=self.timeout, auto_decompress=False)

    async def close(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        headers = forward_request_headers(request.headers.items(), client_host=request.remote, request_id=request_id)
        # The body is read once so that a refused connection can be retried on the next replica.
        body = await request.read()
        first = next(self._turn)
        for step in range(len(self.upstreams)):
            base = self.upstreams[(first + step) % len(self.upstreams)]
            url = upstream_url(base, request.path, request.query_string)
            try:
                async with self.session.request(
                    request.method, url, headers=headers, data=body or None, allow_redirects=False
                ) as upstream:
                    response = web.StreamResponse(status=upstream.status)
                    for name, value in forward_response_headers(upstream.headers.items()):
                        response.headers.add(name, value)
                    response.headers[f"X-Replica-{self.name}"] = base
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                        await response.write(chunk)
                    await response.write_eof()
                    return response
            except aiohttp.ClientConnectorError:
                continue  # that replica is down: try the next one
            except TimeoutError:
                return web.json_response(
                    error_body(504, f"{self.name}: replica {base} timed out", request_id), status=504
                )
        return web.json_response(error_body(503, f"{self.name}: no replica answers", request_id), status=503)


def build_app(name: str, upstreams: list[str]) -> web.Application:
    balancer = RoundRobin(name, upstreams)
    app = web.Application(client_max_size=0)
    app.on_startup.append(balancer.open)
    app.on_cleanup.append(balancer.close)
    app.router.add_route("*", "/{tail:.*}", balancer.handle)
    return app


async def _serve(host: str, port: int, name: str, upstreams: list[str]) -> None:
    runner = web.AppRunner(build_app(name, upstreams), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.round_robin", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="rr", help="names the X-Replica-<name> response header")
    parser.add_argument("--upstream", action="append", required=True, help="a replica's base URL (repeat)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.name, args.upstream))


if __name__ == "__main__":
    main()
