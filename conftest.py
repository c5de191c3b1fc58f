"""Test fixtures shared by every service's tests and the end-to-end tests.

- A real Redis: ``TEST_REDIS_URL`` if set, else one answering on 127.0.0.1:6379, else a
  ``redis-server`` (or fakeredis's TCP server) that this run starts. Each run uses its own
  database number and flushes it first.
- A real SQLite file per test module (``TEST_DATABASE_URL`` points the tests at PostgreSQL).
- ``make_settings`` builds a service's settings for in-process apps; ``issue_token`` mints real
  tokens with ``common.security``; ``launch_suite`` runs ``python main.py`` on free ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from common.config import REPO_ROOT, SERVICE_PORTS, Settings, load_settings
from common.local_redis import LocalRedis, provide_redis
from common.processes import free_port, popen_child, stop_process
from common.security import encode_token

TEST_SECRET = "test-secret-key-for-the-test-run-only-0123456789abcdef"


@pytest.fixture(scope="session")
def local_redis() -> Iterator[LocalRedis]:
    provision = provide_redis(os.environ.get("TEST_REDIS_URL"))
    yield provision
    provision.stop()


@pytest.fixture(scope="session")
def redis_url(local_redis: LocalRedis) -> str:
    """A Redis database of this run's own, flushed at the start."""
    base = local_redis.url.rsplit("/", 1)[0] if local_redis.url.count("/") > 2 else local_redis.url
    url = f"{base}/{1 + os.getpid() % 15}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh database per test module: a SQLite file, or TEST_DATABASE_URL (PostgreSQL)."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        return configured
    path = tmp_path_factory.mktemp("db") / "app.db"
    return f"sqlite+aiosqlite:///{path}"


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
        return self.proc.returncode


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def launch_suite(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Suite]]:
    """Start ``python main.py [services]`` on free ports with a fresh SQLite file; stop it after."""
    suites: list[Suite] = []

    def _launch(*services: str, env: dict[str, str] | None = None, wait: bool = True, timeout: float = 120.0) -> Suite:
        tmp = tmp_path_factory.mktemp("suite")
        ports = {name: free_port() for name in SERVICE_PORTS}
        child_env = dict(os.environ)
        for key in list(child_env):
            if key.endswith("_SERVICE_URL") or key in ("PORT", "HOST"):
                child_env.pop(key)
        child_env.update(
            {
                "DATABASE_URL": os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp / 'app.db'}",
                "REDIS_URL": redis_url,
                "SECRET_KEY": TEST_SECRET,
                "LOG_DIR": str(tmp / "logs"),
                "IMAGE_STORAGE_DIR": str(tmp / "images"),
                "PYTHONUNBUFFERED": "1",
                **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
                **(env or {}),
            }
        )
        proc = popen_child([sys.executable, str(REPO_ROOT / "main.py"), *services], child_env)
        suite = Suite(proc, {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}, child_env)

        def _collect() -> None:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                suite.output.append(raw.decode("utf-8", "replace").rstrip("\n"))

        threading.Thread(target=_collect, daemon=True).start()
        suites.append(suite)
        if wait:
            started = list(services) or list(SERVICE_PORTS)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not all(healthy(suite.url(s)) for s in started):
                if proc.poll() is not None:
                    raise AssertionError(f"launcher exited {proc.returncode}:\n{suite.text()[-5000:]}")
                time.sleep(0.2)
            assert all(healthy(suite.url(s)) for s in started), f"suite not healthy:\n{suite.text()[-5000:]}"
        return suite

    yield _launch
    for suite in suites:
        suite.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # End-to-end tests run last: the quick in-process tests fail fast first.
    items.sort(key=lambda item: 1 if item.get_closest_marker("e2e") else 0)
