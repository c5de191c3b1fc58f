"""How many concurrent chat streams (SSE) one web_service process carries.

This bench serves a stub SSE upstream in place of llm_service (``--events`` events, one every
``--interval`` seconds; a bare ASGI app under uvicorn, through ``bench.harness.start_app``) and
opens ``--concurrency`` streams at once through web_service's same-origin API (the WSGI forwarder),
against web_service as served now (``web_service/main.py``: gunicorn's gevent worker, one worker)
and as it was served before (gunicorn gthread, ``--gthreads`` threads: each stream held one thread
for its whole life, so the pool capped the streams served at once). The same streams straight from
the stub are the baseline, measured in the same run. Servers are pinned to one core and this
process to the other (``bench.harness``). Not a test: nothing asserts a timing.

Run: ``.venv/bin/python -m bench.bench_web_sse`` (a few minutes), or e.g.
``--concurrency 64,1000 --skip-gthread``. Only loopback ports are used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.harness import BenchEnv, percentile, pin_load_generator, start_app, start_service, start_web_gthread  # noqa: E402

STREAM_PATH = "/api/v1/chat/bench-stream"


# ---------------------------------------------------------------- the stub upstream (a bare ASGI app)

# Served by the harness's uvicorn as ``bench.bench_web_sse:stub_app``; the stream's shape comes from env.
STUB_EVENTS = int(os.environ.get("BENCH_SSE_EVENTS", "20"))
STUB_INTERVAL = float(os.environ.get("BENCH_SSE_INTERVAL", "0.1"))


async def stub_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for index in range(STUB_EVENTS):
        chunk = f'event: delta\ndata: {{"content": "token {index} "}}\n\n'.encode()
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await asyncio.sleep(STUB_INTERVAL)
    await send({"type": "http.response.body", "body": b'event: done\ndata: {"message_id": "x"}\n\n'})


# ---------------------------------------------------------------- measuring


@dataclass
class Run:
    label: str
    threads: int | None
    concurrency: int
    wall: float
    ttfb: list[float]
    complete: int
    rss_mb: float | None


async def one_stream(client: httpx.AsyncClient, url: str, events: int) -> tuple[float, bool]:
    start = time.perf_counter()
    first: float | None = None
    seen = 0
    async with client.stream("GET", url) as response:
        async for chunk in response.aiter_raw():
            if first is None:
                first = time.perf_counter() - start
            seen += chunk.count(b"event: delta")
    return (first if first is not None else time.perf_counter() - start), seen == events


async def open_streams(url: str, concurrency: int, events: int, timeout: float) -> tuple[float, list[float], int]:
    """``concurrency`` streams at once → (wall seconds, time to first byte of each, complete streams)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout)) as client:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(client, url, events) for _ in range(concurrency)), return_exceptions=True
        )
        wall = time.perf_counter() - start
    ok = [r for r in results if isinstance(r, tuple)]
    return wall, [r[0] for r in ok], sum(1 for r in ok if r[1])


def group_rss_mb(pgid: int) -> float | None:
    """Resident memory of every process in the group (gunicorn arbiter and worker)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total / 1024 if total else None


def print_runs(runs: list[Run], stream_seconds: float, events: int) -> None:
    print(f"\nEach stream: {events} SSE events over {stream_seconds:.1f}s. One web_service process (1 worker).")
    header = (
        f"{'server':<30} {'threads':>7} {'streams':>7} {'complete':>8} {'wall s':>7} "
        f"{'ttfb p50':>9} {'ttfb p95':>9} {'waves':>6} {'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        rss = f"{run.rss_mb:.0f}" if run.rss_mb else "-"
        p50 = statistics.median(run.ttfb) if run.ttfb else float("nan")
        print(
            f"{run.label:<30} {run.threads or '-':>7} {run.concurrency:>7} {run.complete:>8} {run.wall:>7.2f} "
            f"{p50:>9.3f} {percentile(run.ttfb, 0.95):>9.3f} {run.wall / stream_seconds:>6.1f} {rss:>7}"
        )
    print(
        "\nwaves = wall time / one stream's length: 1.0 means every stream ran at once; above 1 the extra"
        "\nstreams waited (for a free gthread thread, or for CPU); their time to first byte shows the wait."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="64,500,1000", help="comma-separated concurrent streams")
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between events")
    parser.add_argument("--gthreads", type=int, default=64, help="threads of the gthread comparison")
    parser.add_argument("--skip-gthread", action="store_true", help="leave out the gthread comparison")
    args = parser.parse_args()
    pin_load_generator()

    levels = [int(x) for x in args.concurrency.split(",") if x]
    stream_seconds = args.events * args.interval
    timeout = stream_seconds * (max(levels) // max(1, args.gthreads) + 3) + 30
    stub_env = {"BENCH_SSE_EVENTS": str(args.events), "BENCH_SSE_INTERVAL": str(args.interval)}
    runs: list[Run] = []
    with (
        BenchEnv(log_level="WARNING") as bench_env,
        start_app("bench.bench_web_sse:stub_app", env=stub_env, health_path="/health") as stub,
    ):
        for level in levels:
            result = asyncio.run(open_streams(stub.url + STREAM_PATH, level, args.events, timeout))
            runs.append(Run("bare ASGI (uvicorn) baseline", None, level, *result, None))
        env = {**bench_env.env, "LLM_SERVICE_URL": stub.url, "WEB_WORKERS": "1"}
        servers: list[tuple[str, int | None, Any]] = [
            ("web_service gevent (now)", None, lambda: start_service("web_service", env))
        ]
        if not args.skip_gthread:
            servers.append(
                ("web_service gthread (before)", args.gthreads, lambda: start_web_gthread(env, args.gthreads))
            )
        for label, threads, start in servers:
            with start() as web:
                for level in levels:
                    result = asyncio.run(open_streams(web.url + STREAM_PATH, level, args.events, timeout))
                    runs.append(Run(label, threads, level, *result, group_rss_mb(web.proc.pid)))
    print_runs(runs, stream_seconds, args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
