"""A Redis for machines where none is configured (docs/api.md §9), used by the launcher and the tests.

Order: ``REDIS_URL`` when set; one already answering the probe address (127.0.0.1:6379 unless the
caller says otherwise: the launcher reads ``LOCAL_REDIS_PROBE``, ``off`` skips the probe); a
``redis-server`` found on PATH, started as a child; else fakeredis's TCP server in a thread of this
process (pure Python, any OS). Whatever it starts is stopped by ``LocalRedis.stop()`` and dies with
this process: the redis-server child gets SIGTERM from the kernel when its parent dies, the
fakeredis thread is part of the parent.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from common.processes import free_port, popen_child, stop_process

DEFAULT_PROBE: tuple[str, int] = ("127.0.0.1", 6379)
REDIS_SERVER_START_SECONDS = 10.0


def redis_pings(host: str, port: int) -> bool:
    """A Redis (or anything speaking RESP) answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def parse_probe(value: str | None) -> tuple[str, int] | None:
    """``"host:port"`` → (host, port); empty → the default; ``off``/``none``/``0`` → no probe."""
    value = (value or "").strip()
    if not value:
        return DEFAULT_PROBE
    if value.lower() in ("off", "none", "no", "0", "false"):
        return None
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"LOCAL_REDIS_PROBE must be host:port or 'off', not {value!r}")
    return (host or "127.0.0.1", int(port))


@dataclass
class LocalRedis:
    """The Redis in use: its URL, where it comes from, and what (if anything) was started for it."""

    url: str
    source: str
    kind: str  # configured | existing | redis-server | fakeredis
    proc: subprocess.Popen[bytes] | None = None
    server: Any = None

    def stop(self) -> None:
        """Stop what was started (a configured or existing Redis is left alone)."""
        if self.proc is not None:
            stop_process(self.proc, grace=3.0)
            self.proc = None
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def start_redis_server(binary: str) -> LocalRedis | None:
    """Start ``redis-server`` on a free loopback port, without persistence; None if it does not answer."""
    port = free_port()
    proc = popen_child(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        pipe_output=False,
    )
    deadline = time.monotonic() + REDIS_SERVER_START_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        if redis_pings("127.0.0.1", port):
            return LocalRedis(
                f"redis://127.0.0.1:{port}/0",
                f"redis-server started on 127.0.0.1:{port} (pid {proc.pid})",
                "redis-server",
                proc=proc,
            )
        time.sleep(0.05)
    stop_process(proc, grace=1.0)
    return None


def start_fakeredis() -> LocalRedis:
    """fakeredis's TCP server on a free loopback port, served by a daemon thread of this process."""
    from fakeredis import TcpFakeServer

    port = free_port()
    server = TcpFakeServer(("127.0.0.1", port))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="fakeredis").start()
    return LocalRedis(
        f"redis://127.0.0.1:{port}/0",
        f"fakeredis (in the launcher process) on 127.0.0.1:{port}",
        "fakeredis",
        server=server,
    )


def provide_redis(
    configured_url: str | None = None,
    *,
    probe: tuple[str, int] | None = DEFAULT_PROBE,
    search_path: str | None = None,
) -> LocalRedis:
    """The Redis to use, in docs/api.md §9 order.

    ``probe`` is the address of a Redis that may already run (None skips it); ``search_path`` is the
    PATH searched for ``redis-server`` (None: this process's PATH).
    """
    if configured_url:
        return LocalRedis(configured_url, "configured (REDIS_URL)", "configured")
    if probe is not None and redis_pings(*probe):
        host, port = probe
        return LocalRedis(f"redis://{host}:{port}/0", f"existing server on {host}:{port}", "existing")
    binary = shutil.which("redis-server", path=search_path)
    if binary:
        started = start_redis_server(binary)
        if started is not None:
            return started
    return start_fakeredis()
