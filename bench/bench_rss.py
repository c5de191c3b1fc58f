"""Resident memory of every FastAPI service (issue 15): each started as the launcher starts it, its
RSS once it answers, then after some traffic (``wrk`` on its usual endpoints) and a few idle
seconds, with the peak (``VmHWM``). Read from ``/proc/<pid>/status`` (Linux).

    .venv/bin/python -m bench.bench_rss [--database postgresql] [--traffic 5]

llm_service talks to the canned upstream (``devtools.fake_llm``); image_service stores under a
scratch directory. The table also gives what the process weighs before serving anything: the
interpreter with the service's modules imported (``import <service>.main``).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.bench_records import create_tables, fill_records
from bench.harness import (
    REPO_ROOT,
    BenchEnv,
    Server,
    add_database_option,
    http_json,
    run_benchmark,
    start_app,
    start_service,
)

PASSWORD = "bench password 123"
SERVICES = ("user_service", "mobile_service", "llm_service", "image_service")
IMPORTED_RSS = "import resource, sys, {module}; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` (the peak), ``RssAnon`` (the process's own pages) and ``RssFile``
    (mapped files: the interpreter and the extension modules' libraries, shared with every other
    process that maps them) of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if line.startswith(("Vm", "Rss")))
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}


def imported_kib(service: str) -> int:
    """Peak RSS of a fresh interpreter that only imports ``<service>.main``."""
    code = IMPORTED_RSS.format(module=f"{service}.main")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def traffic(servers: dict[str, Server], record_id: str, bearer: dict[str, str], seconds: float) -> None:
    """``seconds`` of wrk on each service's usual reads (the authenticated ones with a real token)."""
    users, mobile, llm, images = (servers[name].url for name in SERVICES)
    for url in (
        f"{users}/api/v1/users/me",
        f"{mobile}/api/v1/records/{record_id}",
        f"{mobile}/api/v1/records?limit=20",
        f"{mobile}/api/v1/users/me",
        f"{llm}/api/v1/models",
        f"{images}/api/v1/images",
    ):
        run_benchmark(url, url, bearer, connections=32, duration=seconds, warmup=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traffic", type=float, default=5.0, help="seconds of wrk per endpoint")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of quiet before the idle reading")
    add_database_option(parser)
    args = parser.parse_args(argv)
    with BenchEnv(log_level="INFO", database=args.database) as env:
        create_tables(env.env["DATABASE_URL"])
        with start_app("devtools.fake_llm:build_app", factory=True, health_path="/health") as fake:
            llm_env = {**env.env, "LLM_BASE_URL": f"{fake.url}/v1", "LLM_API_KEY": "bench"}
            image_env = {**env.env, "IMAGE_STORAGE_DIR": str(Path(env.tmp.name) / "images")}
            with (
                start_service("user_service", env.env) as users,
                start_service("llm_service", llm_env) as llm,
                start_service("image_service", image_env) as images,
                start_service("mobile_service", env.with_urls(user_service=users, llm_service=llm)) as mobile,
            ):
                servers = dict(zip(SERVICES, (users, mobile, llm, images), strict=True))
                started = {name: memory_kib(s.proc.pid)["VmRSS"] for name, s in servers.items()}
                name = f"bench_{uuid.uuid4().hex[:8]}"
                user = http_json("POST", f"{users.url}/api/v1/auth/register", {"username": name, "password": PASSWORD})
                tokens = http_json("POST", f"{users.url}/api/v1/auth/login", {"username": name, "password": PASSWORD})
                record_id = fill_records(env.env["DATABASE_URL"], user["id"], 100, random.Random(7))[0]
                traffic(servers, record_id, {"Authorization": f"Bearer {tokens['access_token']}"}, args.traffic)
                time.sleep(args.idle)
                after = {name: memory_kib(s.proc.pid) for name, s in servers.items()}
    print(f"\nRSS in MB on {args.database} (after {args.traffic:g} s of wrk -c32 per endpoint, {args.idle:g} s idle):")
    print(
        "| service | imported only | serving, before traffic | idle after traffic | of it: own / mapped files | peak |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for service in SERVICES:
        memory, mb = after[service], lambda kib: f"{kib / 1024:.0f}"
        print(
            f"| {service} | {mb(imported_kib(service))} | {mb(started[service])} | {mb(memory['VmRSS'])} "
            f"| {mb(memory['RssAnon'])} / {mb(memory['RssFile'])} | {mb(memory['VmHWM'])} |"
        )


if __name__ == "__main__":
    main()
