"""Benchmark harness: serve a bare ASGI baseline and the endpoints under test on this machine,
drive them all with the same load generator in one run, and print req/s, p50, p99 and the ratio
to the baseline (the ratio is what holds on a noisy, shared machine).

The API other benchmarks build on:

- ``start_app("bench.baseline_app:app")`` / ``start_service("user_service", env)``: uvicorn or a
  service's own ``main.py`` in a subprocess on a free loopback port (a ``Server``; stop it or use
  it as a context manager).
- ``BenchEnv``: a scratch SQLite file, a Redis of its own and a test secret, as the environment a
  service process needs (a context manager that cleans up).
- ``run_benchmark(name, url, headers=..., method=..., body=...)``: one load run → a ``Result``.
  ``wrk`` when it is on PATH (and ``LOAD_GENERATOR`` is not ``asyncio``), else an asyncio loop
  of raw HTTP/1.1 keep-alive connections in this process.
- ``print_table(results, baseline)``.

Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from common.local_redis import LocalRedis, provide_redis  # noqa: E402
from common.processes import free_port, stop_process  # noqa: E402

BENCH_SECRET = "bench-secret-key-not-for-production-0123456789abcdef"
DEFAULT_CONNECTIONS = 64
DEFAULT_DURATION = 10.0
DEFAULT_WARMUP = 2.0
START_TIMEOUT = 60.0


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    """A server process on a loopback port."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.proc, grace=10.0)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_healthy(server: Server, path: str) -> Server:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(server.url + path, timeout=1.0) as response:
                if response.status < 500:
                    return server
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    tail = server.log.read_text(errors="replace")[-3000:] if server.log.exists() else ""
    raise RuntimeError(f"{server.name} did not become healthy at {server.url}{path}:\n{tail}")


# Servers run on core 1 and the load generator (this process, or wrk) on core 0, so the two do not
# take turns on one core. BENCH_PIN=0 turns it off (or a machine with one core, or no taskset).
SERVER_CORE, LOAD_CORE = 1, 0


def pinning_enabled() -> bool:
    return os.environ.get("BENCH_PIN", "1") != "0" and (os.cpu_count() or 1) >= 2 and bool(shutil.which("taskset"))


def pin_load_generator() -> None:
    """Keep this process (the asyncio load generator) off the servers' core."""
    if pinning_enabled():
        os.sched_setaffinity(0, {LOAD_CORE})


def _spawn(name: str, argv: list[str], env: dict[str, str] | None, port: int, health_path: str) -> Server:
    log = Path(tempfile.gettempdir()) / f"bench-{name}-{port}.log"
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if pinning_enabled():
        argv = ["taskset", "-c", str(SERVER_CORE), *argv]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return _wait_healthy(Server(name, f"http://127.0.0.1:{port}", proc, log), health_path)


def start_app(
    target: str, *, env: dict[str, str] | None = None, factory: bool = False, health_path: str = "/"
) -> Server:
    """Serve an importable ASGI app (``module:attr``) with one uvicorn worker, the way the
    services run (no access log, no server header)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--no-server-header",
        "--log-level",
        "warning",
    ]
    if factory:
        argv.append("--factory")
    return _spawn(target.split(":")[0].rsplit(".", 1)[-1], argv, env, port, health_path)


def start_service(service: str, env: dict[str, str]) -> Server:
    """Run ``<service>/main.py`` as the launcher would, on a free port."""
    port = free_port()
    child_env = {**env, f"{service.upper()}_PORT": str(port)}
    return _spawn(service, [sys.executable, str(REPO_ROOT / service / "main.py")], child_env, port, "/health")


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) of ``values`` by nearest rank; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_web_gthread(env: dict[str, str], threads: int = 64) -> Server:
    """web_service as it was served before the gevent worker (gunicorn gthread, ``threads`` per
    worker, one worker), for comparison in the same run (``bench/gthread_web.py``)."""
    port = free_port()
    child_env = {**env, "WEB_SERVICE_PORT": str(port), "BENCH_GTHREADS": str(threads)}
    return _spawn("web_gthread", [sys.executable, "-m", "bench.gthread_web"], child_env, port, "/health")


PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
DATABASES = ("sqlite", "postgresql")


def add_database_option(parser: Any) -> None:
    """``--database sqlite|postgresql`` on a benchmark's argparse parser (for ``BenchEnv``)."""
    parser.add_argument(
        "--database",
        choices=DATABASES,
        default="sqlite",
        help="sqlite: a scratch file; postgresql: a database of its own on TEST_POSTGRES_ADMIN_URL's server, dropped after",
    )


def _pg_admin(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


class BenchEnv:
    """The environment service processes need: a scratch database, a Redis, a secret.

    ``database``: ``sqlite`` (a temporary file) or ``postgresql`` (a database of its own, created
    on the server of ``TEST_POSTGRES_ADMIN_URL`` — default the local one — and dropped on exit).
    Redis: ``REDIS_URL`` if set, else a ``redis-server`` of its own (fakeredis as a last resort,
    which is much slower: the table says which one ran)."""

    def __init__(self, log_level: str = "INFO", database: str = "sqlite") -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-")
        self.redis: LocalRedis = provide_redis(os.environ.get("REDIS_URL"), probe=None)
        root = Path(self.tmp.name)
        self.pg_database: str | None = None
        if database == "postgresql":
            self.pg_database = f"bench_{os.getpid()}_{int(time.time())}"
            _pg_admin(f'CREATE DATABASE "{self.pg_database}"')
            database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.pg_database}"
        else:
            database_url = f"sqlite+aiosqlite:///{root / 'bench.db'}"
        self.env: dict[str, str] = {
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis.url,
            "SECRET_KEY": BENCH_SECRET,
            "LOG_DIR": str(root / "logs"),
            "LOG_LEVEL": log_level,
            "ENV": "development",
        }

    def with_urls(self, **services: Server) -> dict[str, str]:
        """The env plus ``<NAME>_SERVICE_URL`` for the given running services."""
        return {**self.env, **{f"{name.upper()}_URL": server.url for name, server in services.items()}}

    def close(self) -> None:
        self.redis.stop()
        self.tmp.cleanup()
        if self.pg_database is not None:
            _pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')

    def __enter__(self) -> BenchEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """One plain request for set-up steps (register, log in); raises on 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


# ---------------------------------------------------------------- results


@dataclass
class Result:
    name: str
    url: str
    generator: str
    connections: int
    seconds: float
    requests: int
    errors: int  # transport errors and non-2xx answers
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def print_table(results: list[Result], baseline: Result | None = None, out: Any = None) -> None:
    """req/s, p50, p99 and the ratio to the baseline's req/s."""
    out = out or sys.stdout
    base = baseline or (results[0] if results else None)
    header = f"{'benchmark':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs base':>8} {'errors':>7}  generator"
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in results:
        ratio = r.rps / base.rps if base and base.rps else 0.0
        print(
            f"{r.name:<34} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {ratio:>7.1%} {r.errors:>7}  "
            f"{r.generator} c={r.connections} d={r.seconds:.0f}s",
            file=out,
        )
        if r.errors:
            print(f"{'':<34} statuses: {r.statuses}", file=out)


# ---------------------------------------------------------------- load generators


def run_benchmark(
    name: str,
    url: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | str | dict[str, Any] | None = None,
    *,
    connections: int = DEFAULT_CONNECTIONS,
    duration: float = DEFAULT_DURATION,
    warmup: float = DEFAULT_WARMUP,
    generator: str | None = None,
) -> Result:
    """Drive ``method url`` with ``connections`` keep-alive connections for ``duration`` seconds
    (after ``warmup`` seconds whose requests are not counted). A dict body is sent as JSON."""
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    payload = body.encode() if isinstance(body, str) else body
    chosen = generator or os.environ.get("LOAD_GENERATOR") or ("wrk" if shutil.which("wrk") else "asyncio")
    if chosen == "wrk":
        if warmup > 0:
            _run_wrk(url, headers, method, payload, connections, warmup)
        return _run_wrk(url, headers, method, payload, connections, duration, name=name)
    return asyncio.run(_run_asyncio(name, url, headers, method, payload, connections, duration, warmup))


def _request_bytes(url: str, headers: dict[str, str], method: str, body: bytes | None) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    return parts.hostname or "127.0.0.1", parts.port or 80, raw


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; returns (status, keep_alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    length = 0
    chunked = False
    keep_alive = True
    for line in header_lines:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "content-length":
            length = int(value)
        elif key == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif key == "connection" and value.strip().lower() == "close":
            keep_alive = False
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep_alive


async def _run_asyncio(
    name: str,
    url: str,
    headers: dict[str, str],
    method: str,
    body: bytes | None,
    connections: int,
    duration: float,
    warmup: float,
) -> Result:
    host, port, raw = _request_bytes(url, headers, method, body)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    measure_from = started + warmup
    stop_at = measure_from + duration

    async def worker() -> None:
        reader = writer = None
        while time.perf_counter() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                sent = time.perf_counter()
                writer.write(raw)
                status, keep_alive = await _read_response(reader)
                done = time.perf_counter()
                if sent >= measure_from and done <= stop_at:
                    latencies.append(done - sent)
                    statuses[str(status)] += 1
                if not keep_alive:
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if time.perf_counter() >= measure_from:
                    statuses[type(exc).__name__] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return _summarise(name, url, "asyncio", connections, duration, latencies, statuses)


def _summarise(
    name: str,
    url: str,
    generator: str,
    connections: int,
    duration: float,
    latencies: list[float],
    statuses: Counter[str],
) -> Result:
    ok = sum(n for s, n in statuses.items() if s.isdigit() and 200 <= int(s) < 300)
    total = sum(statuses.values())
    if len(latencies) >= 2:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    else:
        p50 = p99 = (latencies[0] * 1000) if latencies else 0.0
    return Result(name, url, generator, connections, duration, ok, total - ok, p50, p99, dict(statuses))


_WRK_LUA = """
wrk.method = {method}
wrk.body = {body}
{headers}
"""


def _lua_string(value: str) -> str:
    # A JSON string literal is a valid Lua one as long as no \uXXXX escape appears.
    return json.dumps(value, ensure_ascii=False)


def _run_wrk(
    url: str,
    headers: dict[str, str],
    method: str,
    body: bytes | None,
    connections: int,
    duration: float,
    name: str = "warmup",
) -> Result:
    lua = _WRK_LUA.format(
        method=_lua_string(method),
        body=_lua_string((body or b"").decode()) if body else "nil",
        headers="\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()),
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        pinned = pinning_enabled()
        threads = 1 if pinned else max(1, min(connections, os.cpu_count() or 1))
        completed = subprocess.run(
            [
                *(["taskset", "-c", str(LOAD_CORE)] if pinned else []),
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(script.name)
    return parse_wrk_output(name, url, connections, completed.stdout)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk_output(name: str, url: str, connections: int, text: str) -> Result:
    """Turn ``wrk --latency`` output into a Result."""
    requests_match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if requests_match is None:
        raise ValueError(f"unexpected wrk output:\n{text}")
    requests = int(requests_match.group(1))
    seconds = _to_ms(requests_match.group(2) + requests_match.group(3)) / 1000
    p50 = re.search(r"^\s*50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", text, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    statuses = {"non-2xx/3xx": int(non_2xx.group(1))} if non_2xx else {}
    if socket_errors:
        kinds = ("connect", "read", "write", "timeout")
        statuses.update({f"socket {kind}": int(n) for kind, n in zip(kinds, socket_errors.groups(), strict=True)})
    statuses = {kind: n for kind, n in statuses.items() if n}
    errors = sum(statuses.values())
    return Result(
        name,
        url,
        "wrk",
        connections,
        seconds,
        max(0, requests - errors),
        errors,
        _to_ms(p50.group(1)) if p50 else 0.0,
        _to_ms(p99.group(1)) if p99 else 0.0,
        statuses,
    )


__all__ = [
    "DATABASES",
    "BenchEnv",
    "Result",
    "Server",
    "add_database_option",
    "http_json",
    "parse_wrk_output",
    "percentile",
    "pin_load_generator",
    "print_table",
    "run_benchmark",
    "start_app",
    "start_service",
    "start_web_gthread",
]
