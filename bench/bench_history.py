"""Record history (docs/api.md §16, issue 17), on ``bench/harness.py``: one mobile_service process
on a scratch SQLite file (``--database postgresql``: a PostgreSQL database of its own), requests
one at a time over HTTP.

- Merge: a record of 100,000 characters (about 1,700 lines); the browser edits its first line, a
  phone then PATCHes its last line against the version before (a merge through the API: base
  read back from its revision, merge3, both sides kept, written). p50/p95 over ``--merges``
  records, and the same three-way merge alone in-process (``merge.merge_content``).
- Revision list: one record with 1,000 revisions (one-line edits); ``GET .../revisions`` first
  page and the last page (offset 980), and ``GET .../revisions/{n}`` of the oldest, the middle
  and the newest revision (a whole text plus at most 31 deltas applied), p50/p95.
- Storage: a 10 KB note with 100 one-line edits; bytes stored per revision (content column, and
  the whole row as SQLite's ``dbstat`` or PostgreSQL's ``pg_table_size`` counts the table),
  against a whole copy.

Run: ``.venv/bin/python -m bench.bench_history`` (about a minute).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from bench.bench_records import run_on_database, sqlite_file
from bench.harness import BENCH_SECRET, BenchEnv, add_database_option, http_json, percentile, start_service
from common.config import Settings, load_settings
from common.security import encode_token
from mobile_service.app.merge import merge_content


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def row(name: str, times: list[float]) -> str:
    return f"{name:<58} p50 {percentile(times, 0.5):8.2f} ms   p95 {percentile(times, 0.95):8.2f} ms"


def long_record(chars: int = 100_000) -> str:
    lines, size, n = [], 0, 0
    while size < chars:
        line = f"Paragraph {n}: notes on the garden, the budget and the week ahead, kept for later.\n"
        lines.append(line)
        size, n = size + len(line), n + 1
    return "".join(lines)[:chars]


def bench_merge(mobile: str, headers: dict[str, str], rounds: int) -> list[str]:
    base = long_record()
    theirs = "Edited first line (browser).\n" + base.split("\n", 1)[1]
    yours = base.rsplit("\n", 2)[0] + "\nEdited last line (phone).\n"
    alone = [timed(lambda: merge_content(base, theirs, yours)) for _ in range(rounds)]
    through_api: list[float] = []
    plain: list[float] = []  # the same size of write without a merge, for comparison
    for n in range(rounds):
        record = http_json("POST", f"{mobile}/api/v1/records", {"title": f"long {n}", "content": base}, headers)
        url = f"{mobile}/api/v1/records/{record['id']}"
        http_json("PATCH", url, {"version": 1, "content": theirs}, headers)
        started = time.perf_counter()
        answer = http_json("PATCH", url, {"version": 1, "content": yours}, headers)
        through_api.append((time.perf_counter() - started) * 1000)
        assert answer["merged"] and answer["content"].startswith("Edited first")
        assert answer["content"].endswith("(phone).\n")
        plain.append(
            timed(lambda u=url, v=answer["version"]: http_json("PATCH", u, {"version": v, "content": base}, headers))
        )
    return [
        f"merge of a {len(base):,}-character record ({base.count(chr(10)):,} lines), edits at both ends:",
        row("  merge3 alone (in-process)", alone),
        row("  stale PATCH merged through mobile_service", through_api),
        row("  (a PATCH of the same record at its version, no merge)", plain),
    ]


def bench_revision_list(mobile: str, headers: dict[str, str], revisions: int, repeat: int) -> list[str]:
    lines = [f"line {n} of a note that is edited one line at a time\n" for n in range(200)]
    record = http_json("POST", f"{mobile}/api/v1/records", {"title": "busy", "content": "".join(lines)}, headers)
    url = f"{mobile}/api/v1/records/{record['id']}"
    started = time.perf_counter()
    for n in range(revisions):
        lines[n % len(lines)] = f"line {n % len(lines)} edited {n}\n"
        http_json("PATCH", url, {"content": "".join(lines)}, headers)
    written = time.perf_counter() - started
    out = [
        f"a record with {revisions:,} revisions (written in {written:.1f} s, {written / revisions * 1000:.1f} ms each):"
    ]
    for name, path in [
        ("  GET /revisions (newest 20)", f"{url}/revisions?limit=20"),
        (f"  GET /revisions?offset={revisions - 20}", f"{url}/revisions?limit=20&offset={revisions - 20}"),
        ("  GET /revisions/1 (the oldest)", f"{url}/revisions/1"),
        (f"  GET /revisions/{revisions // 2}", f"{url}/revisions/{revisions // 2}"),
        (f"  GET /revisions/{revisions} (the newest)", f"{url}/revisions/{revisions}"),
        ("  GET /revisions/1/diff?against=current", f"{url}/revisions/1/diff"),
    ]:
        out.append(row(name, [timed(lambda p=path: http_json("GET", p, headers=headers)) for _ in range(repeat)]))
    return out


def _scalar(database_url: str, sql: str, **params: Any) -> Any:
    async def work(conn: Any) -> Any:
        return (await conn.execute(text(sql), params)).one()

    return run_on_database(database_url, work)


def table_bytes(database_url: str) -> int | None:
    """Bytes the table ``record_revisions`` takes, indexes excluded: SQLite's ``dbstat`` (where it
    is compiled in), PostgreSQL's ``pg_table_size`` (its TOAST included)."""
    if database_url.startswith("postgresql"):
        return int(_scalar(database_url, "SELECT pg_table_size('record_revisions')")[0])
    with sqlite3.connect(sqlite_file(database_url)) as conn:
        try:
            return int(conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'record_revisions'").fetchone()[0])
        except sqlite3.OperationalError:
            return None


def bench_storage(mobile: str, headers: dict[str, str], database_url: str, edits: int) -> list[str]:
    lines = [f"Line {n:03d} of a ten kilobyte note about the garden, the budget and the week.\n" for n in range(137)]
    note = "".join(lines)
    before_rows = _scalar(database_url, "SELECT count(*) FROM record_revisions")[0]  # the earlier parts' revisions
    before_pages = table_bytes(database_url)
    record = http_json("POST", f"{mobile}/api/v1/records", {"title": "ten kilobytes", "content": note}, headers)
    for n in range(edits):
        lines[(n * 7) % len(lines)] = f"Line {(n * 7) % len(lines):03d} was edited ({n}) today.\n"
        http_json("PATCH", f"{mobile}/api/v1/records/{record['id']}", {"content": "".join(lines)}, headers)
    content_bytes = (
        "octet_length(content)" if database_url.startswith("postgresql") else "length(CAST(content AS BLOB))"
    )
    count, content, whole = _scalar(
        database_url,
        f"SELECT count(*), sum({content_bytes}), "
        "sum(CASE content_format WHEN 'full' THEN 1 ELSE 0 END) FROM record_revisions WHERE record_id = :id",
        id=record["id"],
    )
    rows = _scalar(database_url, "SELECT count(*) FROM record_revisions")[0]
    after_pages = table_bytes(database_url)
    out = [
        f"a {len(note.encode()):,}-byte note, {edits} one-line edits -> {count} revisions ({whole} kept whole):",
        f"  content stored per revision: {content / count:,.0f} bytes (a whole copy: {len(note.encode()):,})",
    ]
    if before_pages is not None and after_pages is not None and rows > before_rows:
        out.append(
            f"  table pages per revision (rows, indexes excluded): {(after_pages - before_pages) / count:,.0f} bytes"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--merges", type=int, default=30)
    parser.add_argument("--revisions", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--edits", type=int, default=100)
    add_database_option(parser)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    settings = load_settings(Settings, secret_key=BENCH_SECRET)
    token, _ = encode_token(settings, str(uuid.uuid4()), "user", "access")  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"}
    with (
        BenchEnv(log_level="WARNING", database=args.database) as env,
        start_service("mobile_service", env.env) as mobile,
    ):
        report = bench_merge(mobile.url, headers, args.merges)
        report += bench_revision_list(mobile.url, headers, args.revisions, args.repeat)
        report += bench_storage(mobile.url, headers, env.env["DATABASE_URL"], args.edits)
    print("\n".join(report))


if __name__ == "__main__":
    main()
