"""Test fixtures shared by every service's tests and the end-to-end tests.

- A real Redis: ``TEST_REDIS_URL`` if set, else one answering on 127.0.0.1:6379, else a
  ``redis-server`` (or fakeredis's TCP server) that this run starts. Each run uses its own
  database number and flushes it first.
- A real SQLite file per test module; with ``TEST_DATABASE_URL`` (a PostgreSQL server, e.g.
  ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) a throwaway database of its own on that
  server per test module, dropped afterwards, so concurrent runs never collide.
- ``make_settings`` builds a service's settings for in-process apps; ``issue_token`` mints real
  tokens with ``common.security``; ``launch_suite`` runs ``python main.py`` on free ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.engine import make_url

from common.config import REPO_ROOT, SERVICE_PORTS, Settings, load_settings
from common.local_redis import LocalRedis, provide_redis
from common.processes import descendants, free_port, popen_child, service_healthy, stop_process
from common.security import encode_token

TEST_SECRET = "test-secret-key-for-the-test-run-only-0123456789abcdef"


@pytest.fixture(scope="session")
def local_redis() -> Iterator[LocalRedis]:
    provision = provide_redis(os.environ.get("TEST_REDIS_URL"))
    yield provision
    provision.stop()


@pytest.fixture(scope="session")
def redis_url(local_redis: LocalRedis) -> Iterator[str]:
    """A Redis database of this run's own (1-15, claimed with a lease key in db 0 so that concurrent
    runs never share one), flushed at the start."""
    base = local_redis.url.rsplit("/", 1)[0] if local_redis.url.count("/") > 2 else local_redis.url
    control = redis.Redis.from_url(f"{base}/0")
    claimed = None
    for _attempt in range(600):
        for number in range(1, 16):
            if control.set(f"test-run:db:{number}", str(os.getpid()), nx=True, ex=7200):
                claimed = number
                break
        if claimed is not None:
            break
        time.sleep(1)
    assert claimed is not None, "all Redis test databases 1-15 are claimed by other runs"
    url = f"{base}/{claimed}"
    redis.Redis.from_url(url).flushdb()
    yield url
    control.delete(f"test-run:db:{claimed}")


class PostgresServer:
    """A PostgreSQL server on which this run creates throwaway databases, dropped afterwards.

    ``admin_url`` is any database on the server the run may connect to (e.g. ``.../test``); each
    database made here is named ``sra_t_<pid>_<random>_<n>`` so that concurrent runs never collide,
    and databases left by runs whose process is gone are swept at start.
    """

    PREFIX = "sra_t_"

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.created: list[str] = []

    @staticmethod
    def _dsn(url: str) -> str:
        return url.replace("+asyncpg", "", 1)

    def _execute(self, *statements: str) -> list[Any]:
        import asyncio

        import asyncpg

        async def _run() -> list[Any]:
            conn = await asyncpg.connect(self._dsn(self.admin_url), timeout=5)
            try:
                return [await conn.fetch(statement) for statement in statements]
            finally:
                await conn.close()

        # A worker thread: works whether or not an event loop runs in the caller's thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _run()).result()

    def reachable(self) -> bool:
        try:
            self._execute("SELECT 1")
            return True
        except Exception:
            return False

    def url_for(self, name: str) -> str:
        return str(make_url(self.admin_url).set(database=name).render_as_string(hide_password=False))

    def create_database(self) -> str:
        """Create an empty database of this run's own and return its SQLAlchemy URL."""
        name = f"{self.PREFIX}{self.tag}_{len(self.created)}"
        self._execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def sweep_stale(self) -> None:
        """Drop databases of earlier runs whose process no longer exists (a killed run) and that
        nobody is connected to."""
        rows = self._execute(
            f"SELECT datname FROM pg_database d WHERE datname LIKE '{self.PREFIX}%' "
            "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"
        )[0]
        for row in rows:
            pid = row["datname"][len(self.PREFIX) :].split("_", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                self._execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    """The PostgreSQL server named by TEST_DATABASE_URL, or None (then the tests use SQLite)."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if not configured:
        yield None
        return
    server = PostgresServer(configured)
    if not server.reachable():
        pytest.exit(f"TEST_DATABASE_URL is set but the server does not answer: {make_url(configured)!r}", returncode=3)
    server.sweep_stale()
    yield server
    for name in list(server.created):
        server.drop_database(server.url_for(name))


DEFAULT_TEST_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def reachable_postgres(postgres_server: PostgresServer | None) -> Iterator[PostgresServer | None]:
    """A PostgreSQL server for tests that exercise PostgreSQL even in the SQLite run: the
    TEST_DATABASE_URL one, else the CI server on 127.0.0.1:5432 if it answers, else None (skip)."""
    if postgres_server is not None:
        yield postgres_server
        return
    server = PostgresServer(os.environ.get("TEST_POSTGRES_ADMIN_URL") or DEFAULT_TEST_POSTGRES_URL)
    if not server.reachable():
        yield None
        return
    server.sweep_stale()
    yield server
    for name in list(server.created):
        server.drop_database(server.url_for(name))


@pytest.fixture(scope="session")
def make_database_url(
    postgres_server: PostgresServer | None, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[], str]:
    """A factory of fresh, empty databases: a SQLite file, or a throwaway PostgreSQL database."""

    def _make() -> str:
        if postgres_server is not None:
            return postgres_server.create_database()
        path = tmp_path_factory.mktemp("db") / "app.db"
        return f"sqlite+aiosqlite:///{path}"

    return _make


@pytest.fixture(scope="module")
def database_url(make_database_url: Callable[[], str], postgres_server: PostgresServer | None) -> Iterator[str]:
    """A fresh database per test module: a SQLite file, or with TEST_DATABASE_URL a database of its
    own on that PostgreSQL server, dropped after the module."""
    url = make_database_url()
    yield url
    if postgres_server is not None:
        postgres_server.drop_database(url)


@pytest.fixture(scope="module")
def make_settings(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    log_dir = tmp_path_factory.mktemp("logs")

    def _make(cls: type[Settings] = Settings, service: str = "common", **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "secret_key": TEST_SECRET,
            "log_dir": str(log_dir),
            **overrides,
        }
        return load_settings(cls, service, **values)

    return _make


@pytest.fixture
def issue_token() -> Callable[..., str]:
    """Mint a real access token for ``user_id`` with the test secret (no user_service needed)."""

    def _issue(user_id: str | None = None, role: str = "user", token_type: str = "access") -> str:
        settings = load_settings(Settings, secret_key=TEST_SECRET)
        token, _ = encode_token(settings, user_id or str(uuid.uuid4()), role, token_type)  # type: ignore[arg-type]
        return token

    return _issue


# ---------------------------------------------------------------- the launcher, for end-to-end tests


@dataclass
class Suite:
    """A running ``python main.py`` with its ports, output and environment."""

    proc: subprocess.Popen[bytes]
    urls: dict[str, str]
    env: dict[str, str]
    output: list[str] = field(default_factory=list)
    suite_id: str = ""

    def url(self, service: str) -> str:
        return self.urls[service]

    def text(self) -> str:
        return "\n".join(self.output)

    def wait_for_output(self, needle: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            if self.proc.poll() is not None:
                return needle in self.text()
            time.sleep(0.1)
        return False

    def stop(self, grace: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                stop_process(self.proc, grace=1.0)
        # Whatever escaped the launcher (a bug under test) must not outlive the test run.
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self.proc.returncode

    def wait_exit(self, timeout: float = 60.0) -> int | None:
        """The launcher's exit code once it has exited, or None after ``timeout``."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def child_pids(self) -> list[int]:
        """Live processes below the launcher now (services, their workers, redis-server, fake LLM)."""
        return descendants(self.proc.pid)

    def pid_of(self, service: str) -> int:
        """The pid of a service's ``main.py`` child of the launcher."""
        for pid in self.child_pids():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
                if parent == str(self.proc.pid) and len(argv) > 1 and argv[1].decode().endswith(f"{service}/main.py"):
                    return pid
        raise AssertionError(f"no running {service} child:\n{self.text()[-3000:]}")

    def leftovers(self) -> list[int]:
        """Live processes started for this suite (they carry its SUITE_ID), the launcher included."""
        return processes_with_env("SUITE_ID", self.suite_id) if self.suite_id else []


def processes_with_env(key: str, value: str) -> list[int]:
    """Live, non-zombie pids whose environment has ``key=value`` (Linux ``/proc``)."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def launch_suite(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[], str]
) -> Iterator[Callable[..., Suite]]:
    """Start ``python main.py [services]`` on free ports with a fresh database (a SQLite file, or a
    throwaway PostgreSQL database with TEST_DATABASE_URL); stop it after."""
    suites: list[Suite] = []

    def _launch(
        *services: str,
        env: dict[str, str | None] | None = None,
        wait: bool = True,
        timeout: float = 120.0,
        root: Path | None = None,
    ) -> Suite:
        """``env`` entries override the suite's environment (None removes a key); ``root`` runs the
        ``main.py`` of another copy of the repository (e.g. one without a ``.env``)."""
        tmp = tmp_path_factory.mktemp("suite")
        suite_id = uuid.uuid4().hex
        ports = {name: free_port() for name in SERVICE_PORTS}
        child_env = dict(os.environ)
        for key in list(child_env):
            if key.endswith("_SERVICE_URL") or key in ("PORT", "HOST"):
                child_env.pop(key)
        child_env.update(
            {
                "DATABASE_URL": make_database_url(),
                "REDIS_URL": redis_url,
                "SECRET_KEY": TEST_SECRET,
                "LOG_DIR": str(tmp / "logs"),
                "IMAGE_STORAGE_DIR": str(tmp / "images"),
                "PYTHONUNBUFFERED": "1",
                **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
                "SUITE_ID": suite_id,
            }
        )
        for key, value in (env or {}).items():
            if value is None:
                child_env.pop(key, None)
            else:
                child_env[key] = value
        main_py = (root or REPO_ROOT) / "main.py"
        proc = popen_child([sys.executable, str(main_py), *services], child_env, cwd=root or REPO_ROOT)
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        suite = Suite(proc, urls, child_env, suite_id=suite_id)

        def _collect() -> None:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                suite.output.append(raw.decode("utf-8", "replace").rstrip("\n"))

        threading.Thread(target=_collect, daemon=True).start()
        suites.append(suite)
        if wait:
            started = list(services) or list(SERVICE_PORTS)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not all(service_healthy(suite.url(s)) for s in started):
                if proc.poll() is not None:
                    raise AssertionError(f"launcher exited {proc.returncode}:\n{suite.text()[-5000:]}")
                time.sleep(0.2)
            assert all(service_healthy(suite.url(s)) for s in started), f"suite not healthy:\n{suite.text()[-5000:]}"
        return suite

    yield _launch
    for suite in suites:
        suite.stop()


@pytest.fixture(scope="session")
def fake_llm_url() -> Iterator[str]:
    """The project's OpenAI-protocol upstream (``python -m devtools.fake_llm``) on a free port.

    Yields its base URL ending in ``/v1``; any non-empty API key is accepted."""
    port = free_port()
    proc = popen_child(
        [sys.executable, "-m", "devtools.fake_llm", "--host", "127.0.0.1", "--port", str(port)], pipe_output=False
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not service_healthy(base):
        if proc.poll() is not None:
            raise AssertionError(f"devtools.fake_llm exited with {proc.returncode}")
        time.sleep(0.1)
    try:
        assert service_healthy(base), "devtools.fake_llm did not answer /health"
        yield f"{base}/v1"
    finally:
        stop_process(proc, grace=3.0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # End-to-end tests run last: the quick in-process tests fail fast first.
    items.sort(key=lambda item: 1 if item.get_closest_marker("e2e") else 0)
