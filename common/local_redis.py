"""A Redis for machines where none is configured (SPEC §9), used by the launcher and the tests.

Order: ``REDIS_URL`` when set; one already answering on 127.0.0.1:6379; a ``redis-server`` on
PATH started as a child; else fakeredis's TCP server in a thread (pure Python, any OS).
Whatever it starts is stopped by ``stop()`` and dies with the parent process.
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


def redis_pings(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class LocalRedis:
    url: str
    source: str
    proc: subprocess.Popen[bytes] | None = None
    server: Any = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=3.0)
            self.proc = None
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def provide_redis(configured_url: str | None = None, *, prefer_existing: bool = True) -> LocalRedis:
    if configured_url:
        return LocalRedis(configured_url, "configured (REDIS_URL)")
    if prefer_existing and redis_pings("127.0.0.1", 6379):
        return LocalRedis("redis://127.0.0.1:6379/0", "existing server on 127.0.0.1:6379")
    binary = shutil.which("redis-server")
    if binary:
        port = free_port()
        proc = popen_child(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
            pipe_output=False,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not redis_pings("127.0.0.1", port):
            time.sleep(0.05)
        if redis_pings("127.0.0.1", port):
            return LocalRedis(f"redis://127.0.0.1:{port}/0", f"redis-server started on port {port}", proc=proc)
        stop_process(proc)
    from fakeredis import TcpFakeServer

    port = free_port()
    server = TcpFakeServer(("127.0.0.1", port))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="fakeredis").start()
    return LocalRedis(f"redis://127.0.0.1:{port}/0", f"fakeredis (in-process) on port {port}", server=server)
