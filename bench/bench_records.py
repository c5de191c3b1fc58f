"""Records speed (issue 3, item 7), on ``bench/harness.py``: authenticated record reads per second on
ONE mobile_service process next to the bare ASGI baseline measured in the same run, and search
latency for a user with 100,000 records.

Reads are ``GET /api/v1/records/{id}`` with a real access token (JWT check + Redis revocation
lookup + a row by primary key + the response). Besides req/s and latency it prints the CPU the
server process spent per request (from /proc): on a shared machine that is steadier than req/s.
The search part fills ``--records`` records for one user straight into the SQLite file (the FTS
triggers fire; ``records_cjk`` is filled as mobile_service would) and times
``GET /api/v1/records?q=...`` one request at a time.

Run: ``.venv/bin/python -m bench.bench_records`` (a few minutes with the 100,000-record fill),
``--records 0`` skips search, ``--skip-reads`` skips the throughput part, ``--database
postgresql`` runs it all on a PostgreSQL database of its own (created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench.harness import (
    BENCH_SECRET,
    BenchEnv,
    Result,
    Server,
    add_database_option,
    print_table,
    run_benchmark,
    start_app,
    start_service,
)
from common.config import Settings, load_settings
from common.models.record import cjk_index_text
from common.security import encode_token

T = TypeVar("T")
TOPICS = ["meeting", "budget", "project", "plan", "review", "travel", "diary", "garden", "recipe", "report"]
TOPICS += ["weekly", "quarterly", "design", "release", "customer", "invoice", "school", "homework"]
CHINESE = ["会议纪要", "项目计划", "旅行日记", "读书笔记", "周报总结", "家庭聚会", "健身记录", "客户反馈"]


# ---------------------------------------------------------------- CPU per request


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    name: str, server: Server, url: str, headers: dict[str, str], connections: int, duration: float, warmup: float
) -> tuple[Result, float]:
    """One harness run, warmed up first, with the server's CPU microseconds per request."""
    if warmup > 0:
        run_benchmark(f"{name} (warm-up)", url, headers, connections=connections, duration=warmup, warmup=0)
    before = cpu_seconds(server.proc.pid)
    result = run_benchmark(name, url, headers, connections=connections, duration=duration, warmup=0)
    spent = cpu_seconds(server.proc.pid) - before
    return result, spent / max(1, result.requests + result.errors) * 1e6


def print_cpu(rows: list[tuple[Result, float]]) -> None:
    print(f"\n{'server CPU per request':<34} {'µs':>9} {'= req/s per core':>17}")
    for result, cpu_us in rows:
        print(f"{result.name:<34} {cpu_us:>9.0f} {1e6 / max(1.0, cpu_us):>17,.0f}")


# ---------------------------------------------------------------- data


def sqlite_file(database_url: str) -> Path:
    return Path(database_url.split(":///", 1)[1])


def create_tables(database_url: str) -> None:
    from common.database import Database

    async def _run() -> None:
        db = Database(database_url)
        await db.create_all()
        await db.dispose()

    asyncio.run(_run())


def run_on_database(database_url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """``work(connection)`` in one committed transaction on ``database_url`` (SQLite or
    PostgreSQL, through ``common.database``), for a benchmark's set-up and its counts."""
    from common.database import Database

    async def _run() -> T:
        db = Database(database_url)
        try:
            async with db.engine.begin() as conn:
                return await work(conn)
        finally:
            await db.dispose()

    return asyncio.run(_run())


def _rows(owner: str, count: int, rng: random.Random) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Records (and their tag rows) shaped like real notes: topic words (each in ~10% of the
    records), many rare words, a Chinese phrase in one record out of four."""
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pen", "dor", "lux", "gra"]
    filler = ["".join(rng.choice(syllables) for _ in range(3)) for _ in range(5000)]
    now = datetime.now(UTC)
    rows, tag_rows = [], []
    for n in range(count):
        record_id = str(uuid.uuid4())
        words = " ".join(rng.choice(filler) for _ in range(30))
        title = f"{rng.choice(TOPICS).title()} note {n}"
        chinese = rng.choice(CHINESE) if n % 4 == 0 else ""
        content = f"{words} {rng.choice(TOPICS)} {chinese} {rng.choice(TOPICS)}{n}"
        tag = rng.choice(TOPICS)
        rows.append((record_id, owner, title, content, json.dumps([tag]), False, "private", "[]", 1, n + 1, now, now))
        tag_rows.append((str(uuid.uuid4()), record_id, owner, tag))
    return rows, tag_rows


def fill(path: Path, owner: str, count: int, rng: random.Random) -> list[str]:
    """Insert ``count`` records for ``owner`` through sqlite3 (the FTS triggers fire)."""
    rows, tag_rows = _rows(owner, count, rng)
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO records (id, owner_id, title, content, tags, pinned, visibility, attachments, version, "
        "change_seq, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(*row[:10], row[10].isoformat(sep=" "), row[11].isoformat(sep=" ")) for row in rows],
    )
    conn.executemany("INSERT INTO record_tags (id, record_id, owner_id, tag) VALUES (?,?,?,?)", tag_rows)
    # mobile_service keeps this index in its write path; a bulk insert has to do it itself.
    texts = conn.execute("SELECT rowid, title, content FROM records WHERE owner_id = ?", (owner,)).fetchall()
    conn.executemany(
        "INSERT INTO records_cjk(rowid, body) VALUES (?, ?)",
        [(rowid, body) for rowid, title, content in texts if (body := cjk_index_text(title, content))],
    )
    conn.execute("INSERT INTO record_change_counters (id, value) VALUES (?, ?)", (owner, count))
    conn.commit()
    conn.close()
    return [row[0] for row in rows]


def fill_postgres(database_url: str, owner: str, count: int, rng: random.Random) -> list[str]:
    """The same records through asyncpg (PostgreSQL's GIN index needs no help)."""
    import asyncpg

    rows, tag_rows = _rows(owner, count, rng)

    async def run() -> None:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.executemany(
                "INSERT INTO records (id, owner_id, title, content, tags, pinned, visibility, attachments, "
                "version, change_seq, created_at, updated_at) VALUES ($1,$2,$3,$4,$5::json,$6,$7,$8::json,$9,$10,$11,$12)",
                rows,
            )
            await conn.executemany(
                "INSERT INTO record_tags (id, record_id, owner_id, tag) VALUES ($1,$2,$3,$4)", tag_rows
            )
            await conn.execute("INSERT INTO record_change_counters (id, value) VALUES ($1, $2)", owner, count)
        finally:
            await conn.close()

    asyncio.run(run())
    return [row[0] for row in rows]


def fill_records(database_url: str, owner: str, count: int, rng: random.Random) -> list[str]:
    if database_url.startswith("postgresql"):
        return fill_postgres(database_url, owner, count, rng)
    return fill(sqlite_file(database_url), owner, count, rng)


async def search_latency(base: str, headers: dict[str, str], queries: list[str], repeat: int) -> list[str]:
    lines = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for q in queries:
            times = []
            total = 0
            for _ in range(repeat):
                started = time.perf_counter()
                async with session.get(f"{base}/api/v1/records", params={"q": q, "limit": 20}) as response:
                    body = await response.json()
                    assert response.status == 200, body
                times.append((time.perf_counter() - started) * 1000)
                total = body["total_count"]
            lines.append(
                f"  q={q!r:<22} matches {total:>7,}   p50 {statistics.median(times):7.2f} ms   max {max(times):7.2f} ms"
            )
    return lines


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run, after the warm-up")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--records", type=int, default=100_000, help="records of the searching user (0: skip)")
    parser.add_argument("--skip-reads", action="store_true", help="only the search part")
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL (INFO: access log on)")
    add_database_option(parser)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    rng = random.Random(7)
    settings = load_settings(Settings, secret_key=BENCH_SECRET)
    with BenchEnv(log_level=args.log_level, database=args.database) as env:
        database_url = env.env["DATABASE_URL"]
        create_tables(database_url)
        reader = str(uuid.uuid4())
        read_ids = fill_records(database_url, reader, 100, rng)
        token, _ = encode_token(settings, reader, "user", "access")
        with start_app("bench.baseline_app:app") as base, start_service("mobile_service", env.env) as svc:
            if not args.skip_reads:
                c, d, w = args.connections, args.duration, args.warmup
                rows = [
                    measured("bare ASGI baseline", base, f"{base.url}/", {}, c, d, w),
                    measured(
                        "GET /api/v1/records/{id}",
                        svc,
                        f"{svc.url}/api/v1/records/{read_ids[0]}",
                        {"Authorization": f"Bearer {token}"},
                        c,
                        d,
                        w,
                    ),
                    measured(
                        "GET /api/v1/records?limit=20",
                        svc,
                        f"{svc.url}/api/v1/records?limit=20",
                        {"Authorization": f"Bearer {token}"},
                        c,
                        d,
                        w,
                    ),
                ]
                print_table([r for r, _ in rows], rows[0][0])
                print_cpu(rows)
            if args.records:
                searcher = str(uuid.uuid4())
                started = time.perf_counter()
                fill_records(database_url, searcher, args.records, rng)
                took = time.perf_counter() - started
                print(f"\nsearch, one user with {args.records:,} records (filled in {took:.0f}s), one at a time:")
                token, _ = encode_token(settings, searcher, "user", "access")
                queries = ["budget", "quarterly report", "garden7", "会议纪要", "会议", "travel 旅行"]
                queries += ["nothing-matches", "note"]
                auth = {"Authorization": f"Bearer {token}"}
                for line in asyncio.run(search_latency(svc.url, auth, queries, repeat=5)):
                    print(line)


if __name__ == "__main__":
    main()
