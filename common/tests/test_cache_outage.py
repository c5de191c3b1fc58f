"""docs/api.md §9: when Redis goes away the service stays up, says so, answers 503 where Redis is
needed, and recovers by itself when Redis returns (a real redis-server, killed and restarted)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from common.app_factory import create_app
from common.config import Settings
from common.deps import CurrentUser
from tests.auth import bearer
from tests.redis_server import REDIS_SERVER, RedisServer

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not on PATH; cannot kill and restart one")

RECOVERY_DEADLINE_SECONDS = 20.0

router = APIRouter()


@router.get("/whoami")
async def whoami(user: CurrentUser) -> dict[str, str]:
    return {"id": user.id}


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
    headers = bearer(issue_token())
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
