"""Search by meaning and indexing speed (docs/api.md §15), on ``bench/harness.py``.

Query latency: one user with 1,000 / 10,000 / 100,000 records, filled straight into the database
(the SQLite file, or with ``--database postgresql`` a PostgreSQL database of its own) together with
their chunks, whose vectors are the canned upstream's own (so the query that
llm_service embeds through it is comparable), then ``GET /api/v1/records?q=...&mode=semantic``
and ``mode=hybrid`` through mobile_service, one request at a time: p50/p95 with the owner's
vectors cached in llm_service, and the first query after a write of that owner (the cache is
reloaded from the database).

Indexing throughput: records written through mobile_service at a steady 20 a second for
``--write-seconds``, with the canned upstream; how long after the last write ``/index/status``
says pending 0, and the sustained rate of a backlog written as fast as possible.

Run: ``.venv/bin/python -m bench.bench_semantic`` (about four minutes; ``--sizes 1000 10000`` to
skip the largest). The services run pinned to one core (``taskset``) as in the other benchmarks.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from bench.bench_records import create_tables, fill_records, run_on_database
from bench.harness import BENCH_SECRET, BenchEnv, add_database_option, http_json, percentile, start_app, start_service
from common.config import Settings, load_settings
from common.llm_client import DEFAULT_EMBEDDING_MODEL
from common.models.record import Record
from common.models.record_index import RecordChunk, RecordIndexOwner, RecordIndexState
from common.record_index.chunking import chunk_text, embedding_input
from common.record_index.vectors import to_bytes
from common.security import encode_token
from devtools.fake_llm import EMBEDDING_DIMENSIONS, embed_text

QUERIES = ["quarterly budget review", "garden travel", "会议纪要", "customer invoice design"]


def index_records(database_url: str, owner: str) -> int:
    """Chunks and index state for every record of ``owner``, as llm_service's indexer writes them
    (on either database, through the models' tables)."""

    async def work(conn: Any) -> int:
        found = await conn.execute(
            select(Record.id, Record.title, Record.content, Record.version).where(Record.owner_id == owner)
        )
        now = datetime.now(UTC)
        chunks, states = [], []
        for record_id, title, content, version in found.all():
            for ordinal, piece in enumerate(chunk_text(title, content)):
                vector = embed_text(embedding_input(title, piece), EMBEDDING_DIMENSIONS)
                chunks.append(
                    {
                        "id": str(uuid.uuid4()),
                        "record_id": record_id,
                        "owner_id": owner,
                        "version": version,
                        "generation": 1,
                        "ordinal": ordinal,
                        "model": DEFAULT_EMBEDDING_MODEL,
                        "dimensions": len(vector),
                        "text": piece,
                        "embedding": to_bytes(vector),
                    }
                )
            states.append(
                {
                    "id": record_id,
                    "owner_id": owner,
                    "wanted_version": version,
                    "indexed_version": version,
                    "model": DEFAULT_EMBEDDING_MODEL,
                    "status": "indexed",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "updated_at": now,
                }
            )
        for start in range(0, len(chunks), 5_000):
            await conn.execute(insert(RecordChunk.__table__), chunks[start : start + 5_000])
        for start in range(0, len(states), 5_000):
            await conn.execute(insert(RecordIndexState.__table__), states[start : start + 5_000])
        await conn.execute(insert(RecordIndexOwner.__table__).values(id=owner, generation=1))
        return len(chunks)

    return run_on_database(database_url, work)


def timed_get(url: str, params: dict[str, Any], headers: dict[str, str]) -> float:
    from urllib.parse import urlencode

    started = time.perf_counter()
    http_json("GET", f"{url}?{urlencode(params)}", headers=headers)
    return (time.perf_counter() - started) * 1000


def timed_post(url: str, body: Any, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    http_json("POST", url, body, headers)
    return (time.perf_counter() - started) * 1000


def layer_latency(fake: str, llm: str, headers: dict[str, str], repeat: int) -> list[tuple[str, float, float]]:
    """Where a semantic query's time goes: the upstream's embedding, then llm_service's search."""
    embed = [
        timed_post(f"{fake}/v1/embeddings", {"input": [q], "model": "m"}, {"Authorization": "Bearer bench"})
        for _ in range(repeat)
        for q in QUERIES
    ]
    search = [
        timed_post(f"{llm}/api/v1/index/search", {"query": q, "limit": 100}, headers)
        for _ in range(repeat)
        for q in QUERIES
    ]
    return [
        ("  upstream /v1/embeddings", percentile(embed, 0.5), percentile(embed, 0.95)),
        ("  llm /index/search", percentile(search, 0.5), percentile(search, 0.95)),
    ]


def query_latency(mobile: str, headers: dict[str, str], mode: str, repeat: int) -> tuple[float, float]:
    times = [
        timed_get(f"{mobile}/api/v1/records", {"q": q, "mode": mode, "limit": 20}, headers)
        for _ in range(repeat)
        for q in QUERIES
    ]
    return percentile(times, 0.5), percentile(times, 0.95)


def cold_latency(mobile: str, headers: dict[str, str], rounds: int) -> tuple[float, float]:
    """The first semantic query after a record of the owner was (re-)indexed: every process
    refreshes its copy of the owner's vectors from the database."""
    times = []
    for n in range(rounds):
        http_json("POST", f"{mobile}/api/v1/records", {"title": f"poke {n}", "content": "garden design"}, headers)
        wait_pending_zero(mobile, headers)
        times.append(
            timed_get(f"{mobile}/api/v1/records", {"q": QUERIES[n % len(QUERIES)], "mode": "semantic"}, headers)
        )
    return percentile(times, 0.5), percentile(times, 0.95)


def wait_pending_zero(mobile: str, headers: dict[str, str], timeout: float = 600.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if http_json("GET", f"{mobile}/api/v1/index/status", headers=headers)["pending"] == 0:
            return time.perf_counter() - started
        time.sleep(0.05)
    raise RuntimeError("the index did not catch up")


def indexing(mobile: str, headers: dict[str, str], seconds: float, backlog: int) -> list[str]:
    rng = random.Random(3)
    words = ["budget", "garden", "travel", "meeting", "recipe", "invoice", "会议", "旅行", "school", "design"]
    lines = []
    writes = int(seconds * 20)
    started = time.perf_counter()
    for n in range(writes):
        due = started + n / 20
        time.sleep(max(0.0, due - time.perf_counter()))
        text = " ".join(rng.choice(words) for _ in range(40))
        http_json("POST", f"{mobile}/api/v1/records", {"title": f"steady {n}", "content": text}, headers)
    lag = wait_pending_zero(mobile, headers)
    lines.append(f"  {writes} writes at 20/s over {seconds:.0f}s: pending 0 {lag:.2f}s after the last write")
    for n in range(backlog):
        text = " ".join(rng.choice(words) for _ in range(40))
        http_json("POST", f"{mobile}/api/v1/records", {"title": f"burst {n}", "content": text}, headers)
    written = time.perf_counter()
    wait_pending_zero(mobile, headers)
    total = time.perf_counter() - written
    lines.append(f"  backlog of {backlog} written at once: indexed in {total:.1f}s after the last write")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=10, help="rounds of the query set per size and mode")
    parser.add_argument("--write-seconds", type=float, default=15.0)
    parser.add_argument("--backlog", type=int, default=500)
    add_database_option(parser)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    settings = load_settings(Settings, secret_key=BENCH_SECRET)
    rng = random.Random(7)
    with BenchEnv(log_level="WARNING", database=args.database) as env:
        database_url = env.env["DATABASE_URL"]
        create_tables(database_url)
        owners = {}
        for size in args.sizes:
            owner = str(uuid.uuid4())
            started = time.perf_counter()
            fill_records(database_url, owner, size, rng)
            chunks = index_records(database_url, owner)
            owners[size] = owner
            print(f"filled {size:,} records ({chunks:,} chunks) in {time.perf_counter() - started:.0f}s")
        with start_app("devtools.fake_llm:build_app", factory=True, health_path="/health") as fake:
            llm_env = {
                **env.env,
                "LLM_BASE_URL": f"{fake.url}/v1",
                "LLM_API_KEY": "bench",
                "LLM_RATE_LIMIT_PER_MINUTE": "100000",
            }
            llm_env["INDEX_SEARCH_RATE_LIMIT_PER_MINUTE"] = "100000"
            with (
                start_service("llm_service", llm_env) as llm,
                start_service("mobile_service", env.with_urls(llm_service=llm)) as mobile,
            ):
                print(
                    f"\nquery latency through mobile_service, one at a time ({len(QUERIES)} queries x {args.repeat}):"
                )
                print(f"{'records':>9} {'mode':<9} {'p50 ms':>8} {'p95 ms':>8}")
                for size, owner in owners.items():
                    token, _ = encode_token(settings, owner, "user", "access")
                    headers = {"Authorization": f"Bearer {token}"}
                    timed_get(f"{mobile.url}/api/v1/records", {"q": "warm", "mode": "semantic"}, headers)
                    for mode in ("semantic", "hybrid"):
                        p50, p95 = query_latency(mobile.url, headers, mode, args.repeat)
                        print(f"{size:>9,} {mode:<9} {p50:>8.1f} {p95:>8.1f}")
                    for name, p50, p95 in layer_latency(fake.url, llm.url, headers, args.repeat):
                        print(f"{size:>9,} {name:<9} {p50:>8.1f} {p95:>8.1f}")
                    p50, p95 = cold_latency(mobile.url, headers, 5)
                    print(f"{size:>9,} {'after an indexed write':<9} {p50:>8.1f} {p95:>8.1f}")
                token, _ = encode_token(settings, str(uuid.uuid4()), "user", "access")
                print("\nindexing with the canned upstream (one llm_service process):")
                for line in indexing(
                    mobile.url, {"Authorization": f"Bearer {token}"}, args.write_seconds, args.backlog
                ):
                    print(line)


if __name__ == "__main__":
    main()
