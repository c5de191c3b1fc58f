"""Issue 15's table for our rows, on SQLite and PostgreSQL in one run: read one record, list 20
records, and ``/users/me`` through mobile_service, each as req/s and as a ratio to the raw ASGI
baseline (``bench/baseline_app.py``) served by the same uvicorn and measured in the same round.

The method: ``wrk -t1 -c32 -d10s`` pinned to core 0, every server one process pinned to core 1
(so ``/users/me`` through mobile_service is two processes on one core), the services at
``LOG_LEVEL=INFO`` (access log on) as they run by default; the median of 2 rounds of every row.
Each database gets its own ``BenchEnv`` (a scratch SQLite file, or a PostgreSQL database created
and dropped), a user registered through user_service, and 100 records of that user.

    .venv/bin/python -m bench.bench_hot_paths                 # both databases, ~5 minutes
    .venv/bin/python -m bench.bench_hot_paths --database postgresql --rounds 1 --duration 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from bench.bench_records import create_tables, fill_records
from bench.harness import DATABASES, BenchEnv, Result, Server, http_json, run_benchmark, start_app, start_service

PASSWORD = "bench password 123"
# Issue 15's targets (ratio to the baseline) for each row, by database.
TARGETS: dict[str, dict[str, float]] = {
    "read one record (authenticated)": {"sqlite": 0.053, "postgresql": 0.04},
    "list 20 records": {"sqlite": 0.03, "postgresql": 0.03},
    "/users/me through mobile_service": {"postgresql": 0.025},
}


@dataclass(frozen=True)
class Row:
    """One endpoint's median over the rounds: req/s and the ratio to that round's baseline."""

    name: str
    rps: float
    ratio: float
    errors: dict[str, int]  # what went wrong over the rounds, by kind (a status, a socket error)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]


def _targets(mobile: Server, record_id: str, bearer: dict[str, str]) -> list[Target]:
    return [
        Target("read one record (authenticated)", f"{mobile.url}/api/v1/records/{record_id}", bearer),
        Target("list 20 records", f"{mobile.url}/api/v1/records?limit=20", bearer),
        Target("/users/me through mobile_service", f"{mobile.url}/api/v1/users/me", bearer),
    ]


def _round(base: Server, targets: list[Target], args: argparse.Namespace) -> tuple[Result, list[Result]]:
    load = {"connections": args.connections, "duration": args.duration, "warmup": args.warmup}
    baseline = run_benchmark("raw ASGI baseline", f"{base.url}/", **load)
    return baseline, [run_benchmark(t.name, t.url, t.headers, **load) for t in targets]


def measure(database: str, args: argparse.Namespace) -> tuple[Row, list[Row]]:
    """All rounds on one database; the median req/s and ratio of every row."""
    with BenchEnv(log_level=args.log_level, database=database) as env:
        database_url = env.env["DATABASE_URL"]
        create_tables(database_url)
        with (
            start_app("bench.baseline_app:app") as base,
            start_service("user_service", env.env) as users,
            start_service("mobile_service", env.with_urls(user_service=users)) as mobile,
        ):
            username = f"bench_{uuid.uuid4().hex[:8]}"
            user = http_json("POST", f"{users.url}/api/v1/auth/register", {"username": username, "password": PASSWORD})
            tokens = http_json("POST", f"{users.url}/api/v1/auth/login", {"username": username, "password": PASSWORD})
            record_ids = fill_records(database_url, user["id"], 100, random.Random(7))
            targets = _targets(mobile, record_ids[0], {"Authorization": f"Bearer {tokens['access_token']}"})
            rounds = [_round(base, targets, args) for _ in range(args.rounds)]
    baseline = Row(
        "raw ASGI baseline",
        statistics.median(b.rps for b, _ in rounds),
        1.0,
        _errors(b for b, _ in rounds),
    )
    rows = []
    for i, target in enumerate(targets):
        results = [(results[i], b) for b, results in rounds]
        rows.append(
            Row(
                target.name,
                statistics.median(r.rps for r, _ in results),
                statistics.median(r.rps / b.rps if b.rps else 0.0 for r, b in results),
                _errors(r for r, _ in results),
            )
        )
    return baseline, rows


def _errors(results: Iterable[Result]) -> dict[str, int]:
    """Every answer that was not a 2xx, by kind (the asyncio generator also counts its 2xx)."""
    total: Counter[str] = Counter()
    for result in results:
        total.update({kind: n for kind, n in result.statuses.items() if not _is_2xx(kind)})
    return dict(total)


def _is_2xx(kind: str) -> bool:
    return kind.isdigit() and 200 <= int(kind) < 300


def print_hot_paths(measured: dict[str, tuple[Row, list[Row]]], out: object = None) -> None:
    """The issue's table: one line per endpoint, one column per database (req/s · ratio), the target."""
    out = out or sys.stdout
    databases = list(measured)
    print("| endpoint | " + " | ".join(f"{db} req/s · ratio" for db in databases) + " | target |", file=out)
    print("|---|" + "---:|" * len(databases) + "---|", file=out)
    baselines = " | ".join(f"{measured[db][0].rps:,.0f} · 1" for db in databases)
    print(f"| raw ASGI baseline | {baselines} | |", file=out)
    for i, (name, goals) in enumerate(TARGETS.items()):
        cells = []
        for db in databases:
            row = measured[db][1][i]
            mark = "" if db not in goals else (" ✓" if row.ratio >= goals[db] else " ✗")
            kinds = ", ".join(f"{kind} {n}" for kind, n in row.errors.items())
            errors = f" ({row.error_count} errors: {kinds})" if row.errors else ""
            cells.append(f"{row.rps:,.0f} · {row.ratio:.3f}{mark}{errors}")
        goal = ", ".join(f"{db} ≥ {value}" for db, value in goals.items())
        print(f"| {name} | " + " | ".join(cells) + f" | {goal} |", file=out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=[*DATABASES, "both"], default="both")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run, after the warm-up")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL (INFO: access log on)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    databases = list(DATABASES) if args.database == "both" else [args.database]
    measured = {}
    for database in databases:
        print(f"{database}: {args.rounds} rounds of wrk -t1 -c{args.connections} -d{args.duration:g}s ...")
        measured[database] = measure(database, args)
    print()
    print_hot_paths(measured)


if __name__ == "__main__":
    main()
