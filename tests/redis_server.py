"""A redis-server of a test's own on a fixed port, so it can be killed, frozen and brought back
on the same address (Redis outage tests: ``common/tests/test_cache_outage.py``, the chaos suite)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from common.local_redis import redis_pings
from common.processes import free_port, popen_child, stop_process

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None, "redis-server is not on PATH"
        argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = popen_child(argv, pipe_output=False)
        deadline = time.monotonic() + 10
        while not redis_pings("127.0.0.1", self.port):
            assert time.monotonic() < deadline and self.proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        """Gone at once, as after a crash (its data with it)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def freeze(self) -> None:
        """Still accepting connections, never answering (SIGSTOP): a hung server."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.thaw()
            stop_process(self.proc, grace=3.0)
            self.proc = None
