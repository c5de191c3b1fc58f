"""Where a records request spends its CPU, in-process (issue 15's first step): mobile_service's
app called straight through ASGI (no sockets, no load generator competing), a real Redis and a
real database, under cProfile. Prints the CPU microseconds per request and the functions that
take the most of it, cumulative.

    .venv/bin/python -m bench.profile_records                       # SQLite, the list of 20
    .venv/bin/python -m bench.profile_records --path read           # one record by id
    .venv/bin/python -m bench.profile_records --database postgresql

PostgreSQL: a database of its own on the local server (``TEST_POSTGRES_ADMIN_URL``), dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import time
import uuid

from bench.bench_records import create_tables, fill_records
from bench.cpu_cost import _cost_per_request
from bench.harness import BENCH_SECRET, BenchEnv, add_database_option
from common.config import Settings, load_settings
from common.security import encode_token


async def profile(path: str, headers: list[tuple[bytes, bytes]], count: int, top: int) -> tuple[float, str]:
    from mobile_service.app.config import MobileSettings
    from mobile_service.main import build_app

    app = build_app(load_settings(MobileSettings, "mobile_service"), configure_logging=False)
    async with app.router.lifespan_context(app) as state:
        await _cost_per_request(app, state, path, headers, 50)  # warm-up
        cost = min([await _cost_per_request(app, state, path, headers, count) for _ in range(3)])
        profiler = cProfile.Profile()
        profiler.enable()
        await _cost_per_request(app, state, path, headers, count)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return cost, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", choices=["list", "read"], default="list")
    add_database_option(parser)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()
    settings = load_settings(Settings, secret_key=BENCH_SECRET)
    owner = str(uuid.uuid4())
    with BenchEnv(log_level="WARNING", database=args.database) as env:
        create_tables(env.env["DATABASE_URL"])
        ids = fill_records(env.env["DATABASE_URL"], owner, 200, random.Random(1))
        os.environ.update(env.env)
        token, _ = encode_token(settings, owner, "user", "access")
        path = "/api/v1/records?limit=20" if args.path == "list" else f"/api/v1/records/{ids[0]}"
        started = time.perf_counter()
        bearer = [(b"authorization", f"Bearer {token}".encode())]
        cost, report = asyncio.run(profile(path, bearer, args.requests, args.top))
    print(f"{path} on {args.database}: {cost:.0f} µs of CPU per request")
    print(f"(profiled run below; {time.perf_counter() - started:.0f}s in all)\n")
    print(report)


if __name__ == "__main__":
    main()
