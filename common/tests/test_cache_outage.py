"""SPEC §9: when Redis goes away the service stays up, says so, answers 503 where Redis is
needed, and recovers by itself when Redis returns (a real redis-server, killed and restarted)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from common.app_factory import create_app
from common.config import Settings
from common.deps import CurrentUser
from common.local_redis import redis_pings
from common.processes import free_port, popen_child, stop_process

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not on PATH; cannot kill and restart one")

RECOVERY_DEADLINE_SECONDS = 20.0

router = APIRouter()


@router.get("/whoami")
async def whoami(user: CurrentUser) -> dict[str, str]:
    return {"id": user.id}


class RedisServer:
    """A redis-server of this test's own on a fixed port, so it can come back on the same one."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = popen_child(argv, pipe_output=False)
        deadline = time.monotonic() + 10
        while not redis_pings("127.0.0.1", self.port):
            assert time.monotonic() < deadline and self.proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=3.0)
            self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def test_redis_outage_degrades_and_recovers_without_a_restart(
    redis_server: RedisServer, make_settings: Callable[..., Any], issue_token: Callable[..., str]
) -> None:
    settings = make_settings(Settings, "common", redis_url=redis_server.url)
    app = create_app(settings, title="outage", routers=[router], use_database=False, configure_logging=False)
    headers = {"Authorization": f"Bearer {issue_token()}"}
    with TestClient(app) as client:
        assert client.get("/whoami", headers=headers).status_code == 200
        assert client.get("/ready").json() == {"status": "ok", "checks": {"redis": "ok"}}

        redis_server.kill()

        down = client.get("/whoami", headers=headers)
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["code"] == "service_unavailable" and "REDIS_URL" in body["detail"]
        assert body["request_id"] == down.headers["x-request-id"]
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"].startswith("error")
        assert client.get("/health").status_code == 200

        redis_server.start()  # same port, empty data

        deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
        statuses = []
        while time.monotonic() < deadline:
            statuses.append(client.get("/whoami", headers=headers).status_code)
            if statuses[-1] == 200:
                break
            time.sleep(0.2)
        assert statuses[-1] == 200, f"no recovery; statuses seen: {statuses}"
        assert set(statuses) <= {200, 503}
        assert client.get("/ready").json()["status"] == "ok"
