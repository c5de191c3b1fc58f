"""The local Redis of docs/api.md §9: the fallback order, and that nothing it starts outlives its parent."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
import redis.asyncio

from common.config import REPO_ROOT
from common.local_redis import DEFAULT_PROBE, parse_probe, provide_redis, redis_pings
from common.processes import free_port, port_answers

needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server on PATH")


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_until(condition: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(condition())  # type: ignore[operator]


def test_a_configured_url_is_used_as_is_and_nothing_is_started() -> None:
    provided = provide_redis("redis://127.0.0.1:6390/3")
    assert (provided.url, provided.kind) == ("redis://127.0.0.1:6390/3", "configured")
    assert provided.proc is None and provided.server is None
    provided.stop()  # a no-op for a Redis it did not start


def test_a_redis_answering_the_probe_address_is_used(redis_url: str) -> None:
    parsed = urlparse(redis_url)
    assert parsed.hostname and parsed.port
    provided = provide_redis(None, probe=(parsed.hostname, parsed.port))
    assert provided.kind == "existing"
    assert provided.url == f"redis://{parsed.hostname}:{parsed.port}/0"
    assert f"{parsed.hostname}:{parsed.port}" in provided.source
    assert provided.proc is None and provided.server is None


@needs_redis_server
def test_with_nothing_on_the_probe_address_a_redis_server_is_started_and_stopped() -> None:
    silent = ("127.0.0.1", free_port())
    provided = provide_redis(None, probe=silent)
    try:
        assert provided.kind == "redis-server"
        assert "redis-server" in provided.source
        client = redis.Redis.from_url(provided.url)
        assert client.set("launcher:probe", "1") and client.get("launcher:probe") == b"1"
        client.close()
        assert provided.proc is not None
        pid = provided.proc.pid
    finally:
        provided.stop()
    assert not _alive(pid)
    port = urlparse(provided.url).port
    assert port is not None and not port_answers("127.0.0.1", port)


async def test_without_redis_server_on_path_fakeredis_serves_asyncio_clients(tmp_path: Path) -> None:
    provided = provide_redis(None, probe=None, search_path=str(tmp_path))
    try:
        assert provided.kind == "fakeredis"
        assert "fakeredis" in provided.source
        client = redis.asyncio.Redis.from_url(provided.url)
        await client.set("revoked:jti-1", "1", ex=60)
        assert await client.get("revoked:jti-1") == b"1"
        assert 0 < await client.ttl("revoked:jti-1") <= 60
        assert await client.exists("revoked:jti-2") == 0
        await client.aclose()
    finally:
        provided.stop()
    port = urlparse(provided.url).port
    assert port is not None and not redis_pings("127.0.0.1", port)


@needs_redis_server
def test_a_started_redis_server_dies_with_its_killed_parent() -> None:
    # A parent that starts a redis-server, then is SIGKILLed: no chance to stop its child itself.
    script = (
        "import time\n"
        "from common.local_redis import provide_redis\n"
        "provided = provide_redis(None, probe=None)\n"
        "print(provided.kind, provided.proc.pid if provided.proc else 0, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        kind, pid_text = parent.stdout.readline().split()
        assert kind == "redis-server"
        pid = int(pid_text)
        assert _alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_until(lambda: not _alive(pid)), f"redis-server {pid} outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()


def test_the_probe_address_is_configurable_and_can_be_switched_off() -> None:
    assert parse_probe(None) == DEFAULT_PROBE == ("127.0.0.1", 6379)
    assert parse_probe("127.0.0.1:6400") == ("127.0.0.1", 6400)
    assert parse_probe(":6401") == ("127.0.0.1", 6401)
    assert parse_probe("off") is None
    with pytest.raises(ValueError, match="LOCAL_REDIS_PROBE"):
        parse_probe("127.0.0.1:notaport")


def test_redis_pings_is_false_for_a_port_that_is_not_redis() -> None:
    assert not redis_pings("127.0.0.1", free_port())
