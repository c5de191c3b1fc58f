"""Records speed (issue 3, item 7): authenticated record reads per second on ONE mobile_service
process, next to a bare ASGI app measured in the same run, and search latency for a user with
100,000 records.

It starts, on free loopback ports: a bare ASGI app under uvicorn (the baseline: a fixed JSON body
of a record's size), and the real ``mobile_service/main.py`` on a fresh SQLite file. This process
is the load generator (aiohttp, ``--concurrency`` connections, ``--seconds`` per run after a
warm-up). Reads are ``GET /api/v1/records/{id}`` with a real access token (JWT check + Redis
revocation lookup + a row by primary key + the response model), spread over 100 records.
The search part fills ``--records`` records for one user and times ``GET /api/v1/records?q=...``
one request at a time (latency, not throughput).

Run: ``.venv/bin/python bench/bench_records.py`` (about a minute and a half; ``--records 0`` skips
search), e.g. ``--seconds 5 --concurrency 64``.
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
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from common.config import Settings, load_settings  # noqa: E402
from common.local_redis import provide_redis  # noqa: E402
from common.models.record import cjk_index_text  # noqa: E402
from common.processes import free_port, popen_child, stop_process  # noqa: E402
from common.security import encode_token  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef-0123456789abcdef"
WORDS = [
    "meeting",
    "budget",
    "project",
    "plan",
    "review",
    "notes",
    "travel",
    "diary",
    "idea",
    "draft",
    "family",
    "garden",
    "recipe",
    "book",
    "music",
    "health",
    "sport",
    "report",
    "weekly",
    "quarterly",
    "design",
    "release",
    "customer",
    "invoice",
    "school",
    "homework",
]
CHINESE = ["会议纪要", "项目计划", "旅行日记", "读书笔记", "周报总结", "家庭聚会", "健身记录", "客户反馈"]


# ---------------------------------------------------------------- the load generator


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), to price a request in CPU."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu / max(1, self.requests) * 1e6

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        return (
            f"{self.name:<34} {self.rps:>9,.0f} req/s   p50 {self.pct(0.5):6.2f} ms   "
            f"p99 {self.pct(0.99):6.2f} ms   errors {self.errors}   "
            f"server CPU {self.cpu_us_per_request:5.0f} us/req (= {1e6 / max(1.0, self.cpu_us_per_request):,.0f} req/s per core)"
        )


async def load(
    name: str,
    urls: list[str],
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
    warmup: float = 1.0,
    server_pid: int | None = None,
) -> Result:
    """Keep ``concurrency`` requests in flight for ``seconds`` (after a warm-up); count and time them."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0}
    measuring = False
    stop_at = 0.0

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(index: int) -> None:
            i = index
            while time.perf_counter() < stop_at:
                url = urls[i % len(urls)]
                i += concurrency
                started = time.perf_counter()
                try:
                    async with session.get(url) as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                if measuring:
                    latencies.append((time.perf_counter() - started) * 1000)
                    counts["ok" if ok else "errors"] += 1

        stop_at = time.perf_counter() + warmup
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        measuring = True
        cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
        began = time.perf_counter()
        stop_at = began + seconds
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
    return Result(name, counts["ok"], counts["errors"], elapsed, latencies, cpu)


# ---------------------------------------------------------------- servers


def serve_baseline(port: int) -> None:
    """A bare ASGI app: no framework, no middleware, a fixed JSON body the size of a record."""
    import uvicorn

    body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "title": "Weekly meeting",
            "content": "x" * 200,
            "tags": ["work"],
            "pinned": False,
            "visibility": "private",
            "slug": None,
            "summary": None,
            "attachments": [],
            "version": 1,
            "created_at": datetime.now(UTC).isoformat(),
            "updated_at": datetime.now(UTC).isoformat(),
            "deleted_at": None,
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def start_mobile(port: int, database_url: str, redis_url: str, extra_env: dict[str, str] | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SERVICE_URL") and k not in ("PORT", "HOST")}
    env.update(
        {
            "MOBILE_SERVICE_PORT": str(port),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": SECRET,
            "LOG_DIR": str(Path(tempfile.gettempdir()) / "bench-logs"),
            **(extra_env or {}),
        }
    )
    return popen_child([sys.executable, str(REPO_ROOT / "mobile_service" / "main.py")], env, pipe_output=False)


# ---------------------------------------------------------------- data


def create_tables(database_url: str) -> None:
    from common.database import Database

    async def _run() -> None:
        db = Database(database_url)
        await db.create_all()
        await db.dispose()

    asyncio.run(_run())


def fill(path: Path, owner: str, count: int, rng: random.Random) -> list[str]:
    """Insert ``count`` records for ``owner`` straight through sqlite3 (the FTS triggers fire)."""
    conn = sqlite3.connect(path)
    now = datetime.now(UTC).isoformat(sep=" ")
    # A vocabulary shaped like real notes: a few topic words (each in ~8% of the records), many
    # rare ones, and a Chinese phrase in one record out of four.
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pen", "dor", "lux", "gra"]
    filler = ["".join(rng.choice(syllables) for _ in range(3)) for _ in range(5000)]
    ids: list[str] = []
    rows = []
    tag_rows = []
    for n in range(count):
        record_id = str(uuid.uuid4())
        ids.append(record_id)
        words = " ".join(rng.choice(filler) for _ in range(30))
        title = f"{rng.choice(WORDS).title()} note {n}"
        chinese = rng.choice(CHINESE) if n % 4 == 0 else ""
        content = f"{words} {rng.choice(WORDS)} {chinese} {rng.choice(WORDS)}{n}"
        tag = rng.choice(WORDS)
        rows.append((record_id, owner, title, content, json.dumps([tag]), 0, "private", "[]", 1, n + 1, now, now))
        tag_rows.append((str(uuid.uuid4()), record_id, owner, tag))
    conn.executemany(
        "INSERT INTO records (id, owner_id, title, content, tags, pinned, visibility, attachments, version, "
        "change_seq, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
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
    return ids


# ---------------------------------------------------------------- main


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--records", type=int, default=100_000, help="records of the searching user (0: skip)")
    parser.add_argument("--skip-reads", action="store_true", help="only the search part")
    parser.add_argument("--serve-baseline", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    redis = provide_redis(None)
    redis_url = redis.url.rsplit("/", 1)[0] + "/13" if redis.url.count("/") > 2 else redis.url + "/13"
    tmp = Path(tempfile.mkdtemp(prefix="bench-records-"))
    database_url = f"sqlite+aiosqlite:///{tmp / 'app.db'}"
    create_tables(database_url)
    rng = random.Random(7)
    reader = str(uuid.uuid4())
    read_ids = fill(tmp / "app.db", reader, 100, rng)
    settings = load_settings(Settings, secret_key=SECRET)
    token, _ = encode_token(settings, reader, "user", "access")
    headers = {"Authorization": f"Bearer {token}"}

    base_port, mobile_port = free_port(), free_port()
    baseline = popen_child([sys.executable, __file__, "--serve-baseline", str(base_port)], pipe_output=False)
    mobile = start_mobile(mobile_port, database_url, redis_url)
    try:
        wait_healthy(f"http://127.0.0.1:{base_port}")
        wait_healthy(f"http://127.0.0.1:{mobile_port}")
        if not args.skip_reads:
            print(f"authenticated record read, {args.concurrency} connections, {args.seconds:g}s each (same run):")
            bare = asyncio.run(
                load(
                    "bare ASGI baseline",
                    [f"http://127.0.0.1:{base_port}/x"],
                    {},
                    args.concurrency,
                    args.seconds,
                    server_pid=baseline.pid,
                )
            )
            print(bare.line())
            urls = [f"http://127.0.0.1:{mobile_port}/api/v1/records/{rid}" for rid in read_ids]
            reads = asyncio.run(
                load("GET /api/v1/records/{id}", urls, headers, args.concurrency, args.seconds, server_pid=mobile.pid)
            )
            print(reads.line())
            print(
                f"ratio to the bare baseline: {reads.rps / bare.rps:.2f} (throughput), "
                f"{bare.cpu_us_per_request / reads.cpu_us_per_request:.2f} (CPU per request)"
            )

        if args.records:
            searcher = str(uuid.uuid4())
            started = time.perf_counter()
            fill(tmp / "app.db", searcher, args.records, rng)
            print(f"search, one user with {args.records:,} records (filled in {time.perf_counter() - started:.0f}s):")
            token, _ = encode_token(settings, searcher, "user", "access")
            queries = [
                "budget",
                "quarterly report",
                "garden7",
                "会议纪要",
                "会议",
                "travel 旅行",
                "nothing-matches",
                "note",
            ]
            for line in asyncio.run(
                search_latency(
                    f"http://127.0.0.1:{mobile_port}", {"Authorization": f"Bearer {token}"}, queries, repeat=5
                )
            ):
                print(line)
    finally:
        stop_process(mobile, grace=5.0)
        stop_process(baseline, grace=5.0)
        redis.stop()


if __name__ == "__main__":
    main()
