"""The launcher: ``python main.py [SERVICE ...]`` starts the suite (docs/api.md §12; README, "The
launcher"). It prepares what the services share (``.env``, Redis, tables, free ports, the canned
LLM upstream when no key is set), runs each service's ``main.py`` as a supervised child (output
prefixed, restarted with backoff, given up on a crash loop while the others keep running) and
stops them all on Ctrl-C or SIGTERM, leaving no process behind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT))

from common.config import ROOT_ENV, SERVICE_PORTS, Settings, ensure_root_env, load_settings  # noqa: E402
from common.local_redis import LocalRedis, parse_probe, provide_redis  # noqa: E402
from common.processes import free_port, kill_group, popen_child, port_is_free, service_healthy, stop_process  # noqa: E402
from common.redaction import redact_url  # noqa: E402

# The services `python main.py` starts, in start order.
SERVICES: list[str] = ["user_service", "mobile_service", "llm_service", "image_service", "web_service"]
# Services that talk to an LLM provider: with no key configured, the canned upstream is started for them.
LLM_CLIENTS = ("llm_service", "image_service")
FAKE_LLM_MODULE = "devtools.fake_llm"
FAKE_LLM_NAME = "fake_llm"
FAKE_LLM_API_KEY = "canned-dev-upstream"

EXIT_ALL_GAVE_UP = 1
EXIT_CONFIG_ERROR = 2

COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"
_print_lock = threading.Lock()


class LauncherSettings(Settings):
    """The launcher's own knobs (environment or root ``.env``), on top of the shared keys."""

    launcher_health_timeout_seconds: float = 90.0
    launcher_stop_grace_seconds: float = 15.0
    launcher_max_restarts: int = 5
    launcher_restart_window_seconds: float = 60.0
    launcher_backoff_seconds: float = 0.5
    launcher_max_backoff_seconds: float = 30.0
    # Where a Redis may already answer ("host:port"); "off" skips the probe (docs/api.md §9 order).
    local_redis_probe: str = "127.0.0.1:6379"
    # Interpreter per service (a venv or conda python); unset: this launcher's own.
    user_service_python: str | None = None
    mobile_service_python: str | None = None
    llm_service_python: str | None = None
    image_service_python: str | None = None
    web_service_python: str | None = None
    # The provider key, read for llm_service (its .env counts): with none, the canned upstream starts.
    llm_api_key: str | None = None


def say(message: str) -> None:
    with _print_lock:
        print(f"[launcher] {message}", flush=True)


def shout(*lines: str) -> None:
    bar = "!" * 78
    for line in (bar, *lines, bar):
        say(line)


# ------------------------------------------------------------------ child processes


@dataclass
class Child:
    """One supervised child process: a service, or the canned LLM upstream."""

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
    waiting_for_port: bool = False

    def address(self) -> tuple[str, int]:
        """The host and port the child serves on (from its URL)."""
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None, self.url
        return parts.hostname, parts.port

    def start(self) -> None:
        self.proc = popen_child(self.argv, self.env)
        self.started_at = time.monotonic()
        threading.Thread(target=self._relay, args=(self.proc,), daemon=True, name=f"relay-{self.name}").start()

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

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


def configured_redis_url(settings: LauncherSettings) -> str | None:
    """REDIS_URL when the environment or the root ``.env`` sets it (not the built-in default)."""
    return settings.redis_url if "redis_url" in settings.model_fields_set else None


def llm_key_configured() -> bool:
    """An LLM_API_KEY in the environment, ``llm_service/.env`` or the root ``.env``."""
    return bool(load_settings(LauncherSettings, "llm_service").llm_api_key)


def interpreter_for(settings: LauncherSettings, service: str) -> str:
    """``<SERVICE>_PYTHON`` (env or root ``.env``), else this launcher's interpreter."""
    return getattr(settings, f"{service}_python", None) or sys.executable


def busy_ports(services: list[str]) -> list[tuple[str, str, int]]:
    busy = []
    for name in services:
        settings = load_settings(Settings, name)
        if not port_is_free(settings.host, settings.port):
            busy.append((name, settings.host, settings.port))
    return busy


def create_tables(database_url: str) -> None:
    """SQLite: create missing tables. PostgreSQL: Alembic migrations to head (under the schema
    lock), adopting a database that ``create_all`` made earlier when it matches the models."""
    if not database_url.startswith("sqlite"):
        from common.migrations import upgrade_to_head

        upgrade_to_head(database_url)
        return

    from common.database import Database

    async def _run() -> None:
        db = Database(database_url)
        try:
            await db.create_all()
        finally:
            await db.dispose()

    asyncio.run(_run())


def safe_url(url: str) -> str:
    """A database URL fit for the console: the password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "DATABASE_URL"


Row = tuple[str, str, str, str, str]


def print_table(rows: list[Row], extras: list[Row]) -> None:
    headers: Row = ("service", "url", "docs", "status", "ready in")
    widths = [max(len(r[i]) for r in [headers, *rows, *extras]) for i in range(5)]

    def fmt(row: Row) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    with _print_lock:
        print()
        print(fmt(headers))
        print("-" * (sum(widths) + 2 * 4))
        for row in rows:
            print(fmt(row))
        if extras:
            print("-" * (sum(widths) + 2 * 4))
            for row in extras:
                print(fmt(row))
        print(flush=True)


# ------------------------------------------------------------------ the launcher


class Launcher:
    def __init__(self, services: list[str], settings: LauncherSettings) -> None:
        self.services = services
        self.settings = settings
        self.children: list[Child] = []
        self.fake_llm: Child | None = None
        self.redis: LocalRedis | None = None
        self.stopping = threading.Event()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stopping.is_set():
            say(f"received {signal.Signals(signum).name} again; killing every child now")
            self._kill_all()
            return
        say(f"received {signal.Signals(signum).name}; stopping services (again to kill at once)")
        self.stopping.set()

    def _kill_all(self) -> None:
        procs = [c.proc for c in [*self.children, self.fake_llm] if c is not None and c.proc is not None]
        if self.redis is not None and self.redis.proc is not None:
            procs.append(self.redis.proc)
        for proc in procs:
            kill_group(proc.pid)

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        problems = self._preflight()
        if problems:
            for problem in problems:
                say(f"ERROR: {problem}")
            say("nothing was started")
            return EXIT_CONFIG_ERROR
        try:
            return self._run()
        finally:
            self.shutdown()

    def _preflight(self) -> list[str]:
        """Everything that can be wrong before a process is started: bad interpreters, busy ports."""
        problems = []
        for name in self.services:
            python = interpreter_for(self.settings, name)
            if shutil.which(python) is None:
                problems.append(f"{name.upper()}_PYTHON={python} is not an executable interpreter")
        for name, host, port in busy_ports(self.services):
            problems.append(
                f"port {port} on {host} ({name}) is already in use; stop what holds it "
                f"or set {name.upper()}_PORT to another port"
            )
        return problems

    def _run(self) -> int:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.redis = provide_redis(
            configured_redis_url(self.settings), probe=parse_probe(self.settings.local_redis_probe)
        )
        env["REDIS_URL"] = self.redis.url
        say(f"redis: {self.redis.source}")
        if any(s in self.services for s in LLM_CLIENTS):
            self._maybe_start_fake_llm(env)
        say("creating database tables")
        try:
            create_tables(self.settings.database_url)
        except Exception as exc:  # any driver error: say which database and why, then stop cleanly
            say(f"ERROR: cannot create the tables in {safe_url(self.settings.database_url)}: {exc!r}")
            return EXIT_CONFIG_ERROR
        if self.stopping.is_set():
            return 0
        for index, name in enumerate(self.services):
            settings = load_settings(Settings, name)
            child = Child(
                name=name,
                argv=[interpreter_for(self.settings, name), str(REPO_ROOT / name / "main.py")],
                env=env,
                url=f"http://{settings.host}:{settings.port}",
                colour=COLOURS[index % len(COLOURS)],
            )
            child.start()
            self.children.append(child)
        rows = self._wait_healthy()
        if self.stopping.is_set():
            return 0
        print_table(rows, self._extra_rows())
        ready = all(r[3] == "healthy" for r in rows)
        say("all services started; Ctrl-C stops them" if ready else "some services are not healthy (see above)")
        return self._supervise()

    # -------------------------------------------------------------- canned LLM upstream

    def _maybe_start_fake_llm(self, env: dict[str, str]) -> None:
        """Start the project's OpenAI-protocol upstream when no provider key is configured."""
        if llm_key_configured():
            return
        if not (REPO_ROOT / Path(*FAKE_LLM_MODULE.split("."))).with_suffix(".py").exists():
            return
        port = free_port()
        child = Child(
            name=FAKE_LLM_NAME,
            argv=[sys.executable, "-m", FAKE_LLM_MODULE, "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env),
            url=f"http://127.0.0.1:{port}",
            colour=COLOURS[-1],
        )
        child.start()
        self.fake_llm = child
        deadline = time.monotonic() + 20
        while not self.stopping.is_set() and time.monotonic() < deadline and child.exit_code() is None:
            if service_healthy(child.url):
                break
            time.sleep(0.1)
        env["LLM_BASE_URL"] = f"{child.url}/v1"
        env["LLM_API_KEY"] = FAKE_LLM_API_KEY
        shout(
            "NO LLM PROVIDER CONFIGURED (LLM_API_KEY unset): using the project's canned upstream",
            f"at {env['LLM_BASE_URL']}. Replies are CANNED test text, not a real model.",
            "Set LLM_BASE_URL / LLM_API_KEY / LLM_MODEL in llm_service/.env for a real provider.",
        )

    # -------------------------------------------------------------- health and the table

    def _wait_healthy(self) -> list[Row]:
        start = time.monotonic()
        pending = {c.name: c for c in self.children}
        took: dict[str, str] = {}
        timeout = self.settings.launcher_health_timeout_seconds
        while pending and not self.stopping.is_set() and time.monotonic() - start < timeout:
            for name, child in list(pending.items()):
                if service_healthy(child.url):
                    took[name] = f"{time.monotonic() - child.started_at:.1f}s"
                    del pending[name]
                elif child.exit_code() is not None:
                    took[name] = f"exited ({child.exit_code()})"
                    del pending[name]
            time.sleep(0.1)
        rows = []
        for child in self.children:
            time_taken = took.get(child.name, "timeout")
            status = "healthy" if time_taken.endswith("s") else "NOT READY"
            docs = f"{child.url}/docs" if child.name != "web_service" else f"{child.url}/"
            rows.append((child.name, child.url, docs, status, time_taken))
        return rows

    def _extra_rows(self) -> list[Row]:
        extras: list[Row] = []
        if self.redis is not None:
            extras.append(("redis", redact_url(self.redis.url), self.redis.source, "ok", ""))  # no password
        if self.fake_llm is not None:
            status = "healthy" if service_healthy(self.fake_llm.url) else "NOT READY"
            extras.append((FAKE_LLM_NAME, f"{self.fake_llm.url}/v1", "CANNED replies (no LLM_API_KEY)", status, ""))
        return extras

    # -------------------------------------------------------------- supervision

    def _supervise(self) -> int:
        supervised = [*self.children, *([self.fake_llm] if self.fake_llm else [])]
        while not self.stopping.wait(0.2):
            for child in supervised:
                self._check(child)
            if self.children and all(c.gave_up for c in self.children):
                say("ERROR: every service has been given up; stopping")
                return EXIT_ALL_GAVE_UP
        return 0

    def _check(self, child: Child) -> None:
        if child.gave_up or child.proc is None:
            return
        code = child.exit_code()
        if code is None:
            return
        now = time.monotonic()
        if child.next_start == 0.0:
            kill_group(child.proc.pid)  # orphaned workers would keep the port
            window = self.settings.launcher_restart_window_seconds
            child.restarts = [t for t in child.restarts if now - t < window]
            if len(child.restarts) >= self.settings.launcher_max_restarts:
                child.gave_up = True
                shout(
                    f"CRASH LOOP: {child.name} died {len(child.restarts) + 1} times within {window:.0f}s "
                    f"(last exit code {code}); GIVING UP on {child.name}.",
                    "The other services keep running. See its output above and logs/; fix it and restart the launcher.",
                )
                return
            delay = min(
                self.settings.launcher_max_backoff_seconds,
                self.settings.launcher_backoff_seconds * 2 ** len(child.restarts),
            )
            child.next_start = now + delay
            say(f"{child.name} exited with code {code}; restarting in {delay:.1f}s")
        elif now >= child.next_start:
            if not self._port_free_for_restart(child):
                return  # not started, so not counted as a crash: a start would only fail to bind
            child.next_start = 0.0
            child.restarts.append(now)
            child.start()
            say(f"{child.name} restarted (pid {child.proc.pid})")

    def _port_free_for_restart(self, child: Child) -> bool:
        """Whether the child's port can be bound; says so once when it cannot, and when it can again.

        The port is the configured one (``<SERVICE>_PORT``): never moved behind the user's back."""
        host, port = child.address()
        if not port_is_free(host, port):
            if not child.waiting_for_port:
                child.waiting_for_port = True
                hint = (
                    f" (or set {child.name.upper()}_PORT and start the launcher again)"
                    if child.name in SERVICE_PORTS
                    else ""
                )
                say(
                    f"cannot restart {child.name}: port {port} on {host} is in use by another process; "
                    f"restarting it once the port is free{hint}"
                )
            return False
        if child.waiting_for_port:
            child.waiting_for_port = False
            say(f"port {port} on {host} is free again; restarting {child.name}")
        return True

    def shutdown(self) -> None:
        self.stopping.set()
        grace = self.settings.launcher_stop_grace_seconds
        threads = [
            threading.Thread(target=stop_process, args=(c.proc, grace)) for c in self.children if c.proc is not None
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.fake_llm is not None and self.fake_llm.proc is not None:
            stop_process(self.fake_llm.proc, grace=3.0)
        if self.redis is not None:
            self.redis.stop()
        if self.children:
            say("all services stopped")


# ------------------------------------------------------------------ entry point


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="Start the Smart Record Assistant services and supervise them until Ctrl-C or SIGTERM. "
        "With no arguments all of them start: "
        + ", ".join(f"{s} (:{SERVICE_PORTS[s]})" for s in SERVICES)
        + ". Configuration comes from the environment, <service>/.env and the root .env "
        "(written with a fresh SECRET_KEY on first run).",
        epilog="Useful keys: <SERVICE>_PORT (e.g. USER_SERVICE_PORT=9001), <SERVICE>_PYTHON (interpreter for "
        "that service), REDIS_URL (else a local Redis is found or started), LLM_API_KEY (else a canned LLM "
        "upstream is started), LAUNCHER_MAX_RESTARTS / LAUNCHER_RESTART_WINDOW_SECONDS (crash-loop limit), "
        "LAUNCHER_STOP_GRACE_SECONDS. Example: python main.py user_service llm_service",
    )
    parser.add_argument(
        "services", nargs="*", metavar="SERVICE", help=f"a subset to start, from: {', '.join(SERVICES)}"
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.services if s not in SERVICES]
    if unknown:
        parser.error(f"unknown service(s): {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    services = [s for s in SERVICES if s in args.services] if args.services else list(SERVICES)
    if ensure_root_env():
        say(f"first run: wrote {ROOT_ENV.name} with a freshly generated SECRET_KEY")
    try:
        settings = load_settings(LauncherSettings)
        parse_probe(settings.local_redis_probe)
    except ValueError as exc:
        say(f"ERROR: configuration: {exc}")
        return EXIT_CONFIG_ERROR
    return Launcher(services, settings).run()


if __name__ == "__main__":
    sys.exit(main())
