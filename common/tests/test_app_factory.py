"""The FastAPI app factory (docs/api.md §4, §11): the error shape for every error, request ids, one
access-log line per request, /health, /ready, /metrics, and ServiceClient failures as 503/504."""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Query, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from common.app_factory import create_app
from common.app_state import client_of
from common.config import REPO_ROOT, Settings
from common.deps import CurrentUser
from common.errors import Conflict, RateLimited
from common.processes import free_port
from tests.auth import bearer

SERVICE = f"factory_test_{uuid.uuid4().hex[:6]}"


class Item(BaseModel):
    name: str
    size: int


router = APIRouter(prefix="/t")


@router.get("/items/{number}")
async def read_item(number: int, flag: Annotated[bool, Query()] = False) -> dict[str, Any]:
    return {"number": number, "flag": flag}


@router.post("/items")
async def create_item(item: Item) -> Item:
    return item


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("database password is hunter2")


@router.get("/conflict")
async def conflict() -> None:
    raise Conflict("Stale version", extra={"current": {"version": 3}})


@router.get("/limited")
async def limited() -> None:
    raise RateLimited(42)


@router.get("/whoami")
async def whoami(user: CurrentUser) -> dict[str, str]:
    return {"id": user.id, "role": user.role}


@router.get("/call-upstream")
async def call_upstream(request: Request, path: str = "/health") -> dict[str, Any]:
    response = await client_of(request, "user_service").request("GET", path, timeout=0.5)
    return {"status": response.status_code}


def assert_shape(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"detail", "code", "request_id"} and body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.fixture(scope="module")
def build(make_settings: Callable[..., Any]) -> Callable[..., Any]:
    def _build(**overrides: Any) -> Any:
        settings = make_settings(Settings, "common", service_name=SERVICE, **overrides)
        return create_app(
            settings,
            title="factory test",
            routers=[router],
            use_database=False,
            upstreams=["user_service"],
            configure_logging=False,
        )

    return _build


@pytest.fixture(scope="module")
def client(build: Callable[..., Any], tiny_upstream: str) -> Iterator[TestClient]:
    app = build(user_service_url=tiny_upstream, cors_origins="http://app.example")
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_unknown_path_is_404_in_the_spec_shape(client: TestClient) -> None:
    assert_shape(client.get("/nope"), 404, "not_found")


def test_wrong_method_is_405_in_the_spec_shape(client: TestClient) -> None:
    assert_shape(client.delete("/t/items/1"), 405, "method_not_allowed")


def test_validation_errors_keep_fastapis_detail_list(client: TestClient) -> None:
    body = assert_shape(client.get("/t/items/abc"), 422, "validation_error")
    assert body["detail"][0]["loc"] == ["path", "number"] and "msg" in body["detail"][0]
    body = assert_shape(client.post("/t/items", json={"name": "x", "size": "big"}), 422, "validation_error")
    assert body["detail"][0]["loc"] == ["body", "size"]


def test_unhandled_errors_are_500_without_the_stack_trace(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get("/t/boom", headers={"X-Request-ID": "trace-me-500"})
    body = assert_shape(response, 500, "internal_error")
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert body["request_id"] == "trace-me-500"
    # ... and the request id finds the full error in the log.
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert logged and "hunter2" in str(logged[0].exc_info[1])


def test_typed_errors_carry_extra_fields_and_headers(client: TestClient) -> None:
    body = assert_shape(client.get("/t/conflict"), 409, "conflict")
    assert body["current"] == {"version": 3}
    limited = client.get("/t/limited")
    assert_shape(limited, 429, "rate_limited")
    assert limited.headers["retry-after"] == "42"


def test_request_id_is_accepted_or_made_and_returned(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-ID": "abc.DEF-123"}).headers["x-request-id"] == "abc.DEF-123"
    made = client.get("/health").headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    unsafe = client.get("/health", headers={"X-Request-ID": "x" * 500}).headers["x-request-id"]
    assert unsafe != "x" * 500


def test_request_id_is_passed_to_upstream_calls(build: Callable[..., Any], tiny_upstream: str) -> None:
    echo_router = APIRouter()

    @echo_router.get("/echo-upstream")
    async def echo_upstream(request: Request) -> Any:
        return (await client_of(request, "user_service").request("GET", "/echo")).json()

    app = build(user_service_url=tiny_upstream)
    app.include_router(echo_router)
    with TestClient(app) as c:
        echoed = c.get("/echo-upstream", headers={"X-Request-ID": "hop-1"}).json()
    assert echoed["headers"]["x-request-id"] == "hop-1"


def test_one_access_log_line_per_request(
    client: TestClient, issue_token: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    user_id = str(uuid.uuid4())
    with caplog.at_level(logging.INFO, logger="access"):
        client.get("/t/items/7")
        client.get("/t/whoami", headers=bearer(issue_token(user_id)))
        client.get("/nope")
    lines = [r for r in caplog.records if r.name == "access"]
    assert len(lines) == 3
    fields = [r.fields for r in lines]  # type: ignore[attr-defined]
    assert [(f["method"], f["path"], f["status"]) for f in fields] == [
        ("GET", "/t/items/7", 200),
        ("GET", "/t/whoami", 200),
        ("GET", "/nope", 404),
    ]
    assert all(isinstance(f["latency_ms"], float) for f in fields)
    assert fields[0]["user_id"] == "-" and fields[1]["user_id"] == user_id
    assert user_id in lines[1].getMessage() and "/t/whoami" in lines[1].getMessage()


def test_health_ready_and_metrics(client: TestClient) -> None:
    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "service": SERVICE, "version": "0.1.0"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json() == {
        "status": "ok",
        "checks": {"redis": "ok", "user_service": "ok"},
    }
    client.get("/t/items/1")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert f'service="{SERVICE}"' in metrics.text and 'route="/t/items/{number}"' in metrics.text
    assert "http_request_duration_seconds_bucket" in metrics.text


def test_cors_follows_the_configured_origins(client: TestClient) -> None:
    allowed = client.options(
        "/t/items/1", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "GET"}
    )
    assert allowed.headers.get("access-control-allow-origin") == "http://app.example"
    other = client.get("/t/items/1", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_auth_dependency_errors(client: TestClient, issue_token: Callable[..., str]) -> None:
    missing = assert_shape(client.get("/t/whoami"), 401, "not_authenticated")
    assert "Bearer" in missing["detail"]
    bad = client.get("/t/whoami", headers={"Authorization": "Bearer nonsense"})
    assert_shape(bad, 401, "invalid_token")
    assert bad.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    refresh = issue_token(token_type="refresh")
    assert_shape(client.get("/t/whoami", headers=bearer(refresh)), 401, "invalid_token")
    admin = client.get("/t/whoami", headers=bearer(issue_token(role="admin")))
    assert admin.json()["role"] == "admin"


def test_down_and_slow_upstreams_answer_503_and_504(client: TestClient, build: Callable[..., Any]) -> None:
    assert_shape(client.get("/t/call-upstream", params={"path": "/slow"}), 504, "upstream_timeout")
    with TestClient(build(user_service_url=f"http://127.0.0.1:{free_port()}")) as down:
        body = assert_shape(down.get("/t/call-upstream"), 503, "service_unavailable")
        assert "user_service" in body["detail"]
        ready = down.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["user_service"].startswith("error")
        assert down.get("/health").status_code == 200


def test_body_limit_is_413_with_and_without_content_length(build: Callable[..., Any]) -> None:
    with TestClient(build(max_body_bytes=1000)) as small:
        body = {"name": "x" * 2000, "size": 1}
        assert_shape(small.post("/t/items", json=body), 413, "payload_too_large")

        def chunks() -> Iterator[bytes]:
            yield b'{"name": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'", "size": 1}'

        assert_shape(
            small.post("/t/items", content=chunks(), headers={"Content-Type": "application/json"}),
            413,
            "payload_too_large",
        )
        assert small.post("/t/items", json={"name": "ok", "size": 1}).status_code == 200


def test_405_lists_every_method_the_path_supports(build: Callable[..., Any]) -> None:
    extra = APIRouter()

    @extra.get("/t/both")
    async def read_both() -> dict[str, str]:
        return {"m": "get"}

    @extra.patch("/t/both")
    async def patch_both() -> dict[str, str]:
        return {"m": "patch"}

    app = build()
    app.include_router(extra)
    with TestClient(app) as c:
        response = c.delete("/t/both")
        assert_shape(response, 405, "method_not_allowed")
        assert set(response.headers["allow"].split(", ")) == {"GET", "PATCH"}


GC_PROBE = """
import gc
from common.app_factory import tune_garbage_collector
before = gc.get_threshold()
tune_garbage_collector(0)
assert gc.get_threshold() == before and gc.get_freeze_count() == 0
tune_garbage_collector(25000)
assert gc.get_threshold() == (25000, before[1], before[2]), gc.get_threshold()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
print("ok")
"""


def test_served_processes_freeze_the_start_up_heap_and_raise_the_gc_threshold() -> None:
    result = subprocess.run([sys.executable, "-c", GC_PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


MALLOC_PROBE = """
import sys
from common.app_factory import tune_malloc

def anon_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon"))

assert tune_malloc(0) is False
if sys.argv[1] == "tuned":
    assert tune_malloc(1 << 20) is True
before = anon_kib()
for _ in range(3):  # glibc raises its own threshold after the first large free
    block = b"x" * (20 << 20)
    del block
print(anon_kib() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not Path("/proc/self/status").exists(), reason="glibc only")
def test_served_processes_give_large_freed_blocks_back_to_the_system() -> None:
    def kept_kib(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", MALLOC_PROBE, mode], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    assert kept_kib("default") > 15 * 1024  # the freed 20 MiB stayed resident
    assert kept_kib("tuned") < 5 * 1024
