from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from common.config import REPO_ROOT
from common.processes import free_port, popen_child, stop_process
from mobile_service.app.config import MobileSettings
from mobile_service.main import build_app
from tests.auth import bearer
from tests.fixtures.settings import TEST_SECRET


@dataclass
class RunningProcess:
    proc: subprocess.Popen[bytes]
    url: str


def wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode("utf-8", "replace") if proc.stdout else ""
            raise AssertionError(f"{url} exited with {proc.returncode}:\n{output[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SERVICE_URL") and k not in ("PORT", "HOST")}
    env.update({"PYTHONUNBUFFERED": "1", "SECRET_KEY": TEST_SECRET, **extra})
    return env


@pytest.fixture(scope="module")
def start_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningProcess]]:
    """Start a real process serving HTTP on a free port; every one is stopped after the module."""
    started: list[subprocess.Popen[bytes]] = []

    def _start(argv: list[str], env: dict[str, str] | None = None, port: int | None = None) -> RunningProcess:
        port = port or free_port()
        logs = tmp_path_factory.mktemp("proclogs")
        full_env = child_env(LOG_DIR=str(logs), **(env or {}))
        argv = [arg.replace("{port}", str(port)) for arg in argv]
        proc = popen_child([sys.executable, *argv], full_env, cwd=Path(REPO_ROOT))
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, url)
        return RunningProcess(proc, url)

    yield _start
    for proc in started:
        stop_process(proc, grace=5.0)


@pytest.fixture(scope="module")
def stub(start_process: Callable[..., RunningProcess]) -> RunningProcess:
    """The small real upstream of ``forward_upstream.py`` (uploads, SSE, slow answers, text tasks)."""
    return start_process(["-m", "mobile_service.tests.forward_upstream", "--port", "{port}"])


@pytest.fixture(scope="module")
def mobile_settings(make_settings: Callable[..., Any]) -> Callable[..., MobileSettings]:
    def _make(**overrides: Any) -> MobileSettings:
        return make_settings(MobileSettings, "mobile_service", **overrides)

    return _make


@pytest.fixture(scope="module")
def mobile_client(mobile_settings: Callable[..., MobileSettings]) -> Iterator[TestClient]:
    """mobile_service in-process, its upstream services pointed at a port nobody listens on."""
    dead = f"http://127.0.0.1:{free_port()}"
    settings = mobile_settings(user_service_url=dead, llm_service_url=dead, image_service_url=dead)
    with TestClient(build_app(settings, configure_logging=False)) as client:
        yield client


@pytest.fixture
def auth_headers(issue_token: Callable[..., str]) -> Callable[[str], dict[str, str]]:
    def _headers(user_id: str) -> dict[str, str]:
        return bearer(issue_token(user_id))

    return _headers
