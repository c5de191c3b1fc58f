"""user_service benchmarks next to a bare ASGI baseline, all in one run:

    .venv/bin/python -m bench.bench_user_service [--duration 10] [--connections 64] [--database postgresql]

1. baseline: a bare ASGI app on uvicorn
2. the auth path alone (a factory app whose endpoint only depends on ``CurrentUser``)
2. GET /api/v1/users/me with a bearer token (JWT check + one Redis MGET + one database read)
3. POST /api/v1/auth/login (one argon2id verification per request)
4. one inter-service hop: a factory-built app → ServiceClient → user_service /users/me
"""

from __future__ import annotations

import argparse
import uuid

from bench.harness import (
    DEFAULT_CONNECTIONS,
    DEFAULT_DURATION,
    BenchEnv,
    Result,
    add_database_option,
    http_json,
    print_table,
    run_benchmark,
    start_app,
    start_service,
)

PASSWORD = "bench password 123"


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_user_service", description=__doc__)
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="seconds per benchmark")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument("--generator", choices=["wrk", "asyncio"], default=None, help="default: wrk if installed")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the services (INFO: access log on)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these: auth me login hop")
    add_database_option(parser)
    args = parser.parse_args(argv)
    load = {"duration": args.duration, "connections": args.connections, "generator": args.generator}
    wanted = set(args.only or ["auth", "me", "login", "hop"])

    results: list[Result] = []
    with BenchEnv(log_level=args.log_level, database=args.database) as env:
        print(f"redis: {env.redis.source}, database: {args.database}")
        with (
            start_app("bench.baseline_app:app") as baseline,
            start_service("user_service", env.env) as users,
            start_app(
                "bench.hop_app:build_app", factory=True, env=env.with_urls(user_service=users), health_path="/health"
            ) as hop,
        ):
            username = f"bench_{uuid.uuid4().hex[:8]}"
            http_json("POST", f"{users.url}/api/v1/auth/register", {"username": username, "password": PASSWORD})
            tokens = http_json("POST", f"{users.url}/api/v1/auth/login", {"username": username, "password": PASSWORD})
            bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

            results.append(run_benchmark("baseline: bare ASGI (uvicorn)", f"{baseline.url}/", **load))
            if "auth" in wanted:
                results.append(run_benchmark("auth only: JWT + Redis MGET", f"{hop.url}/auth", bearer, **load))
            if "me" in wanted:
                results.append(run_benchmark("GET /api/v1/users/me", f"{users.url}/api/v1/users/me", bearer, **load))
            if "login" in wanted:
                results.append(
                    run_benchmark(
                        "POST /api/v1/auth/login",
                        f"{users.url}/api/v1/auth/login",
                        method="POST",
                        body={"username": username, "password": PASSWORD},
                        **load,
                    )
                )
            if "hop" in wanted:
                results.append(run_benchmark("hop: app → ServiceClient → /users/me", f"{hop.url}/hop", bearer, **load))
    print_table(results, results[0])
    return results


if __name__ == "__main__":
    main()
