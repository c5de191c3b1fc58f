"""The launcher: ``python main.py`` starts the Smart Record Assistant suite (SPEC §12).

Before starting it writes the first ``.env`` (with a fresh SECRET_KEY), makes sure Redis is there
(the configured one; one already on 127.0.0.1:6379; a ``redis-server`` it starts; else fakeredis
in a thread), starts the project's canned OpenAI-protocol upstream when no LLM key is configured,
creates the tables once and checks that every port is free. Then it starts each service's
``main.py`` as a child process, relays their output prefixed with the service name, waits for every
``/health`` and prints a table. A child that dies is restarted with backoff; a crash loop is given
up loudly. Ctrl-C or SIGTERM stops every child (SIGTERM, then SIGKILL) and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

REPO_ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT))

from common.config import ROOT_ENV, SERVICE_PORTS, Settings, ensure_root_env, load_settings  # noqa: E402
from common.local_redis import LocalRedis, provide_redis  # noqa: E402
from common.processes import free_port, popen_child, port_answers, port_is_free, stop_process  # noqa: E402

# The services `python main.py` starts, in start order.
SERVICES: list[str] = ["user_service", "mobile_service", "llm_service", "image_service", "web_service"]

HEALTH_TIMEOUT_SECONDS = 90.0
STOP_GRACE_SECONDS = 10.0
CRASH_LOOP_RESTARTS = 5  # this many restarts ...
CRASH_LOOP_WINDOW_SECONDS = 60.0  # ... within this window is a crash loop
MAX_BACKOFF_SECONDS = 30.0
FAKE_LLM_MODULE = "devtools.fake_llm"

COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"
_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(f"[launcher] {message}", flush=True)


# ------------------------------------------------------------------ child processes


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    url: str
    colour: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: list[float] = field(default_factory=list)
    next_start: float = 0.0
    gave_up: bool = False

    def start(self) -> None:
        self.proc = popen_child(self.argv, self.env)
        self.started_at = time.monotonic()
        threading.Thread(target=self._relay, args=(self.proc,), daemon=True, name=f"relay-{self.name}").start()

    def _relay(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        tty = sys.stdout.isatty()
        prefix = f"{self.colour}{self.name:<15}{RESET}| " if tty else f"{self.name:<15}| "
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with _print_lock:
                print(prefix + line, flush=True)
        proc.stdout.close()


# ------------------------------------------------------------------ configuration


def _configured(key: str) -> str | None:
    """A key set in the process environment or the root .env (not a built-in default)."""
    if os.environ.get(key):
        return os.environ[key]
    value = dotenv_values(ROOT_ENV).get(key) if ROOT_ENV.exists() else None
    return value or None


# ------------------------------------------------------------------ canned LLM upstream


def maybe_start_fake_llm(env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    """Start the project's OpenAI-protocol upstream when no provider key is configured."""
    service_env = REPO_ROOT / "llm_service" / ".env"
    key = _configured("LLM_API_KEY") or (
        dotenv_values(service_env).get("LLM_API_KEY") if service_env.exists() else None
    )
    if key:
        return None
    if not (REPO_ROOT / Path(*FAKE_LLM_MODULE.split("."))).with_suffix(".py").exists():
        return None
    port = free_port()
    proc = popen_child(
        [sys.executable, "-m", FAKE_LLM_MODULE, "--host", "127.0.0.1", "--port", str(port)], env, pipe_output=False
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not port_answers("127.0.0.1", port):
        time.sleep(0.1)
    env["LLM_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
    env["LLM_API_KEY"] = "canned-dev-upstream"
    bar = "!" * 78
    say(bar)
    say("NO LLM PROVIDER CONFIGURED (LLM_API_KEY unset): using the project's canned upstream")
    say(f"at {env['LLM_BASE_URL']}. Replies are CANNED test text, not a real model.")
    say("Set LLM_BASE_URL / LLM_API_KEY / LLM_MODEL in llm_service/.env for a real provider.")
    say(bar)
    return proc


# ------------------------------------------------------------------ start-up checks


def busy_ports(services: list[str]) -> list[tuple[str, str, int]]:
    busy = []
    for name in services:
        settings = load_settings(Settings, name)
        if not port_is_free(settings.host, settings.port):
            busy.append((name, settings.host, settings.port))
    return busy


def create_tables(database_url: str) -> None:
    from common.database import Database

    async def _run() -> None:
        db = Database(database_url)
        try:
            await db.create_all()
        finally:
            await db.dispose()

    asyncio.run(_run())


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
            return response.status == 200
    except OSError:
        return False


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    headers = ("service", "url", "docs", "status", "ready in")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(5)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    with _print_lock:
        print()
        print(line)
        print("-" * len(line))
        for row in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        print(flush=True)


# ------------------------------------------------------------------ main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="Start the Smart Record Assistant services. With no arguments all of them start: "
        + ", ".join(f"{s} (:{SERVICE_PORTS[s]})" for s in SERVICES)
        + ". Configuration comes from the environment, <service>/.env and the root .env.",
        epilog="Ctrl-C or SIGTERM stops every service. Example: python main.py user_service llm_service",
    )
    parser.add_argument(
        "services", nargs="*", metavar="SERVICE", help=f"a subset to start, from: {', '.join(SERVICES)}"
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.services if s not in SERVICES]
    if unknown:
        parser.error(f"unknown service(s): {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    return args


class Launcher:
    def __init__(self, services: list[str]) -> None:
        self.services = services
        self.children: list[Child] = []
        self.redis: LocalRedis | None = None
        self.fake_llm: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping.is_set():
            say(f"received {signal.Signals(signum).name}; stopping services")
        self.stopping.set()

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        if ensure_root_env():
            say("first run: wrote .env with a freshly generated SECRET_KEY")
        busy = busy_ports(self.services)
        if busy:
            for name, host, port in busy:
                say(
                    f"ERROR: port {port} on {host} ({name}) is already in use; stop what holds it or set PORT in {name}/.env"
                )
            return 2
        try:
            return self._run()
        finally:
            self.shutdown()

    def _run(self) -> int:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.redis = provide_redis(_configured("REDIS_URL"))
        env["REDIS_URL"] = self.redis.url
        say(f"redis: {self.redis.source}")
        if "llm_service" in self.services:
            self.fake_llm = maybe_start_fake_llm(env)
        root = load_settings(Settings)
        say("creating database tables")
        create_tables(root.database_url)
        for index, name in enumerate(self.services):
            settings = load_settings(Settings, name)
            python = os.environ.get(f"{name.upper()}_PYTHON") or _configured(f"{name.upper()}_PYTHON") or sys.executable
            child = Child(
                name=name,
                argv=[python, str(REPO_ROOT / name / "main.py")],
                env=env,
                url=f"http://{settings.host}:{settings.port}",
                colour=COLOURS[index % len(COLOURS)],
            )
            child.start()
            self.children.append(child)
        rows = self._wait_healthy()
        print_table(rows)
        extras = [f"redis: {self.redis.source}"]
        if self.fake_llm is not None:
            extras.append("LLM: canned dev upstream (no LLM_API_KEY)")
        say("; ".join(extras))
        say(
            "all services started; Ctrl-C stops them"
            if all(r[3] == "healthy" for r in rows)
            else "some services are not healthy"
        )
        self._supervise()
        return 0

    def _wait_healthy(self) -> list[tuple[str, str, str, str, str]]:
        start = time.monotonic()
        pending = {c.name: c for c in self.children}
        took: dict[str, str] = {}
        while pending and not self.stopping.is_set() and time.monotonic() - start < HEALTH_TIMEOUT_SECONDS:
            for name, child in list(pending.items()):
                if _healthy(child.url):
                    took[name] = f"{time.monotonic() - child.started_at:.1f}s"
                    del pending[name]
                elif child.proc is not None and child.proc.poll() is not None:
                    took[name] = f"exited ({child.proc.returncode})"
                    del pending[name]
            time.sleep(0.1)
        rows = []
        for child in self.children:
            status = "healthy" if child.name in took and not took[child.name].startswith("exited") else "NOT READY"
            docs = f"{child.url}/docs" if child.name != "web_service" else f"{child.url}/"
            rows.append((child.name, child.url, docs, status, took.get(child.name, "timeout")))
        return rows

    def _supervise(self) -> None:
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            for child in self.children:
                if child.gave_up or child.proc is None:
                    continue
                code = child.proc.poll()
                if code is None:
                    continue
                if child.next_start == 0.0:
                    child.restarts = [t for t in child.restarts if now - t < CRASH_LOOP_WINDOW_SECONDS]
                    if len(child.restarts) >= CRASH_LOOP_RESTARTS:
                        child.gave_up = True
                        say(
                            f"ERROR: {child.name} crashed {len(child.restarts) + 1} times within "
                            f"{CRASH_LOOP_WINDOW_SECONDS:.0f}s; giving up on it (exit code {code}). "
                            f"See logs/{child.name}.log"
                        )
                        continue
                    delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** len(child.restarts))
                    child.next_start = now + delay
                    say(f"{child.name} exited with code {code}; restarting in {delay:.1f}s")
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.restarts.append(now)
                    child.start()

    def shutdown(self) -> None:
        self.stopping.set()
        threads = [threading.Thread(target=stop_process, args=(c.proc,)) for c in self.children if c.proc is not None]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.fake_llm is not None:
            stop_process(self.fake_llm, grace=3.0)
        if self.redis is not None:
            self.redis.stop()
        if self.children:
            say("all services stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    services = [s for s in SERVICES if s in args.services] if args.services else list(SERVICES)
    return Launcher(services).run()


if __name__ == "__main__":
    sys.exit(main())
