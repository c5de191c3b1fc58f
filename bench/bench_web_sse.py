"""How many concurrent chat streams (SSE) one web_service process carries.

Under gunicorn's gthread worker each streaming response holds one thread for its whole life, so
the thread pool (``WEB_THREADS``) caps the streams served at once; more wait in the accept queue.
This bench starts a stub SSE upstream in place of llm_service (``--events`` events, one every
``--interval`` seconds), starts the real ``web_service/main.py`` (gunicorn, one worker) with each
``--threads`` value, and opens ``--concurrency`` streams at once through web_service's same-origin
API (the WSGI forwarder). The same streams straight from the stub (a bare ASGI app under uvicorn)
are the baseline, measured in the same run.

Run: ``.venv/bin/python bench/bench_web_sse.py`` (about a minute), or e.g.
``--threads 16,64 --concurrency 16,64,96``. Only loopback ports are used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from common.processes import free_port, popen_child, stop_process  # noqa: E402

STREAM_PATH = "/api/v1/chat/bench-stream"


# ---------------------------------------------------------------- the stub upstream (a bare ASGI app)


def serve_stub(port: int, events: int, interval: float) -> None:
    import uvicorn

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            return
        if scope["path"] == "/health":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
        for index in range(events):
            chunk = f'event: delta\ndata: {{"content": "token {index} "}}\n\n'.encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})  # type: ignore[operator]
            await asyncio.sleep(interval)
        await send({"type": "http.response.body", "body": b'event: done\ndata: {"message_id": "x"}\n\n'})  # type: ignore[operator]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=4096)


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
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout)) as client:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(client, url, events) for _ in range(concurrency)), return_exceptions=True
        )
        wall = time.perf_counter() - start
    ok = [r for r in results if isinstance(r, tuple)]
    return wall, [r[0] for r in ok], sum(1 for r in ok if r[1])


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy")


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


def start_web(threads: int, stub_url: str, log_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(
        os.environ,
        WEB_SERVICE_PORT=str(port),
        WEB_THREADS=str(threads),
        WEB_WORKERS="1",
        LLM_SERVICE_URL=stub_url,
        LOG_LEVEL="WARNING",
        LOG_DIR=log_dir,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # anonymous streams never touch Redis
        PYTHONUNBUFFERED="1",
    )
    proc = popen_child([sys.executable, str(REPO_ROOT / "web_service" / "main.py")], env, pipe_output=False)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    return proc, url


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="16,64", help="comma-separated WEB_THREADS values")
    parser.add_argument("--concurrency", default="16,64,96", help="comma-separated concurrent streams")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument(
        "--interval", type=float, default=0.1, help="seconds between events (a stream lasts events × interval)"
    )
    parser.add_argument("--serve-stub", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        serve_stub(args.serve_stub, args.events, args.interval)
        return 0

    threads_list = [int(x) for x in args.threads.split(",") if x]
    levels = [int(x) for x in args.concurrency.split(",") if x]
    stream_seconds = args.events * args.interval
    timeout = stream_seconds * (max(levels) // max(1, min(threads_list)) + 3) + 30
    stub_port = free_port()
    stub = popen_child(
        [
            sys.executable,
            __file__,
            "--serve-stub",
            str(stub_port),
            "--events",
            str(args.events),
            "--interval",
            str(args.interval),
        ],
        pipe_output=False,
    )
    runs: list[Run] = []
    try:
        stub_url = f"http://127.0.0.1:{stub_port}"
        wait_healthy(stub_url)
        for level in levels:
            wall, ttfb, complete = asyncio.run(open_streams(stub_url + STREAM_PATH, level, args.events, timeout))
            runs.append(Run("bare ASGI (uvicorn) baseline", None, level, wall, ttfb, complete, None))
        with tempfile.TemporaryDirectory() as log_dir:
            for threads in threads_list:
                web, web_url = start_web(threads, stub_url, log_dir)
                try:
                    for level in levels:
                        result = asyncio.run(open_streams(web_url + STREAM_PATH, level, args.events, timeout))
                        rss = group_rss_mb(web.pid)
                        runs.append(Run("web_service gthread", threads, level, *result, rss))
                finally:
                    stop_process(web, grace=5.0)
    finally:
        stub.send_signal(signal.SIGTERM)
        stop_process(stub, grace=3.0)

    print(f"\nEach stream: {args.events} SSE events over {stream_seconds:.1f}s. One web_service process (1 worker).")
    header = f"{'server':<30} {'threads':>7} {'streams':>7} {'complete':>8} {'wall s':>7} {'ttfb p50':>9} {'ttfb p95':>9} {'waves':>6} {'RSS MB':>7}"
    print(header)
    print("-" * len(header))
    for run in runs:
        waves = run.wall / stream_seconds
        rss = f"{run.rss_mb:.0f}" if run.rss_mb else "-"
        print(
            f"{run.label:<30} {run.threads or '-':>7} {run.concurrency:>7} {run.complete:>8} {run.wall:>7.2f} "
            f"{statistics.median(run.ttfb) if run.ttfb else float('nan'):>9.3f} {pct(run.ttfb, 0.95):>9.3f} {waves:>6.1f} {rss:>7}"
        )
    print(
        "\nwaves = wall time / one stream's length: 1.0 means every stream ran at once; above 1 the extra"
        "\nstreams waited for a free gthread thread (their time to first byte shows the wait)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
