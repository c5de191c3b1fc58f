"""Where a records request spends its CPU, in-process (issue 15's first step): mobile_service's
app called straight through ASGI (no sockets, no load generator competing), a real Redis and a
real database, under cProfile. Prints the CPU microseconds per request and the functions that
take the most of it, cumulative.

    .venv/bin/python -m bench.profile_records                       # SQLite, the list of 20
    .venv/bin/python -m bench.profile_records --path read           # one record by id
    .venv/bin/python -m bench.profile_records --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

With a PostgreSQL URL the benchmark creates its own database on that server and drops it after.
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
from typing import Any

from bench.bench_records import create_tables, fill, sqlite_file
from bench.cpu_cost import _cost_per_request
from bench.harness import BENCH_SECRET, BenchEnv
from common.config import Settings, load_settings
from common.security import encode_token


async def _fill_postgres(database_url: str, owner: str, count: int) -> list[str]:
    from common.database import Database
    from common.models.record import Record, RecordChangeCounter

    db = Database(database_url)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    try:
        await db.create_all()
        async with db.session() as session:
            for n, record_id in enumerate(ids):
                session.add(
                    Record(id=record_id, owner_id=owner, title=f"note {n}", content="word " * 40, change_seq=n + 1)
                )
            session.add(RecordChangeCounter(id=owner, value=count))
            await session.commit()
    finally:
        await db.dispose()
    return ids


def _scratch_postgres(admin_url: str) -> tuple[str, Any]:
    """A database of its own on the server of ``admin_url``, and the function that drops it."""
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    plain = admin_url.replace("postgresql+asyncpg://", "postgresql://")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    return url, lambda: asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL (default: a scratch SQLite)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()
    settings = load_settings(Settings, secret_key=BENCH_SECRET)
    owner = str(uuid.uuid4())
    with BenchEnv(log_level="WARNING") as env:
        drop = None
        if args.database_url:
            env.env["DATABASE_URL"], drop = _scratch_postgres(args.database_url)
            ids = asyncio.run(_fill_postgres(env.env["DATABASE_URL"], owner, 200))
        else:
            create_tables(env.env["DATABASE_URL"])
            ids = fill(sqlite_file(env.env["DATABASE_URL"]), owner, 200, random.Random(1))
        os.environ.update(env.env)
        token, _ = encode_token(settings, owner, "user", "access")
        path = "/api/v1/records?limit=20" if args.path == "list" else f"/api/v1/records/{ids[0]}"
        started = time.perf_counter()
        try:
            cost, report = asyncio.run(
                profile(path, [(b"authorization", f"Bearer {token}".encode())], args.requests, args.top)
            )
        finally:
            if drop is not None:
                drop()
    print(f"{path} on {'PostgreSQL' if args.database_url else 'SQLite'}: {cost:.0f} µs of CPU per request")
    print(f"(profiled run below; {time.perf_counter() - started:.0f}s in all)\n")
    print(report)


if __name__ == "__main__":
    main()
