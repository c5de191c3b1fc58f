"""Do slow clients delay everyone else? A slowloris run against one web_service process.

``--slow`` connections are held open against the server for ``--duration`` seconds: half send a
request's headers one line every ``--interval`` seconds and never finish them, half send complete
headers of a ``POST /login`` and then its body one byte every ``--interval`` seconds. A connection
the server closes is opened again 0.1 s later (as an attacker would), so the pressure never drops.
Meanwhile a normal user asks ``GET /health`` on a fresh connection every 50 ms; the table shows
that user's latency (p50, p95), how many of its requests failed (no answer within 5 s), and how
many slow connections the server closed (its read timeouts at work).

Servers, one process each on one core, measured in the same run: a bare ASGI app under uvicorn
(the baseline), web_service as served now (gunicorn gevent, ``web_service/app/server.py``) and
web_service as it was served before (gunicorn gthread, 64 threads). Not a test: nothing asserts.

Run: ``.venv/bin/python -m bench.bench_slowloris`` (about a minute), e.g. ``--slow 500 --duration 15``.
Only loopback ports are used.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.harness import BenchEnv, Server, percentile, pin_load_generator, start_app, start_service, start_web_gthread  # noqa: E402

PROBE_EVERY = 0.05
PROBE_TIMEOUT = 5.0


@dataclass
class Pressure:
    opened: int = 0
    closed_by_server: int = 0
    held: int = 0


@dataclass
class Outcome:
    label: str
    slow: int
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    pressure: Pressure = field(default_factory=Pressure)


async def slow_client(host: str, port: int, body_mode: bool, interval: float, stop: asyncio.Event, p: Pressure) -> None:
    """One slow connection, reopened whenever the server closes it, until ``stop``."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
        except (OSError, TimeoutError):
            await asyncio.sleep(interval)
            continue
        p.opened += 1
        p.held += 1
        try:
            if body_mode:
                head = (
                    f"POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    "Content-Length: 100000\r\n\r\n"
                )
                writer.write(head.encode())
            else:
                writer.write(f"GET /health HTTP/1.1\r\nHost: {host}\r\n".encode())
            while not stop.is_set():
                await writer.drain()
                try:
                    # The server closing the connection (or answering) ends this round.
                    data = await asyncio.wait_for(reader.read(65536), timeout=interval)
                    if not data or b"HTTP/1." in data:
                        p.closed_by_server += 1
                        break
                except TimeoutError:
                    pass
                writer.write(b"u" if body_mode else b"X-Slow: 1\r\n")
        except OSError:
            p.closed_by_server += 1
        finally:
            p.held -= 1
            writer.close()
        await asyncio.sleep(0.1)  # reconnect soon, not in a tight loop (a server that answers at once)


async def probe(host: str, port: int, path: str) -> float | None:
    """One normal request on a fresh connection → seconds to a complete status line, or None."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readline()
            await reader.read()
            writer.close()
    except (TimeoutError, OSError):
        return None
    return time.perf_counter() - start if status.startswith(b"HTTP/1.1 200") else None


async def run(label: str, server: Server, path: str, slow: int, interval: float, duration: float) -> Outcome:
    parts = urlsplit(server.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    outcome = Outcome(label, slow)
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(slow_client(host, port, i % 2 == 1, interval, stop, outcome.pressure)) for i in range(slow)
    ]
    await asyncio.sleep(min(3.0, duration / 4))  # let the slow connections pile up first
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        latency = await probe(host, port, path)
        if latency is None:
            outcome.failed += 1
        else:
            outcome.latencies.append(latency)
        await asyncio.sleep(PROBE_EVERY)
    stop.set()
    await asyncio.gather(*clients, return_exceptions=True)
    return outcome


def print_outcomes(outcomes: list[Outcome], interval: float) -> None:
    print(f"\nSlow connections send one header line (or body byte) every {interval:g} s; half headers, half bodies.")
    header = (
        f"{'server':<34} {'slow':>5} {'probes ok':>9} {'failed':>6} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'opened':>7} {'closed by server':>16}"
    )
    print(header)
    print("-" * len(header))
    for o in outcomes:
        p50 = statistics.median(o.latencies) * 1000 if o.latencies else float("nan")
        print(
            f"{o.label:<34} {o.slow:>5} {len(o.latencies):>9} {o.failed:>6} {p50:>8.1f} "
            f"{percentile(o.latencies, 0.95) * 1000:>8.1f} {o.pressure.opened:>7} {o.pressure.closed_by_server:>16}"
        )
    print(f"\nfailed = the normal user's GET got no answer within {PROBE_TIMEOUT:g} s.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", default="0,500", help="comma-separated counts of slow connections")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between a slow client's bytes")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of probing per row")
    parser.add_argument("--skip-gthread", action="store_true", help="leave out the gthread comparison")
    args = parser.parse_args()
    levels = [int(x) for x in args.slow.split(",") if x]
    pin_load_generator()

    outcomes: list[Outcome] = []
    with BenchEnv(log_level="WARNING") as env:
        servers = [("bare ASGI (uvicorn) baseline", lambda: start_app("bench.baseline_app:app"), "/")]
        servers.append(("web_service gevent (now)", lambda: start_service("web_service", env.env), "/health"))
        if not args.skip_gthread:
            servers.append(("web_service gthread 64 (before)", lambda: start_web_gthread(env.env, 64), "/health"))
        for label, start, path in servers:
            with start() as server:
                for slow in levels:
                    outcomes.append(asyncio.run(run(label, server, path, slow, args.interval, args.duration)))
    print_outcomes(outcomes, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
