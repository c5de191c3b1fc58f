"""Child processes and ports, for the launcher and the test run alike.

Every child starts in its own session (so Ctrl-C at a terminal reaches only the launcher, which
stops the children in order) and, on Linux, with ``PR_SET_PDEATHSIG``: the kernel sends it SIGTERM
when the thread that started it dies, even when the parent is SIGKILLed. Start children from the
main thread, which lives as long as the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import random
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from common.config import REPO_ROOT

PR_SET_PDEATHSIG = 1
PROC = Path("/proc")

# Port choice (``free_port``): the kernel's ephemeral range, and where picked ports start (above the
# suite's default ports, Redis's and the usual development servers').
EPHEMERAL_RANGE_FILE = PROC / "sys" / "net" / "ipv4" / "ip_local_port_range"
FALLBACK_EPHEMERAL_RANGE = (32768, 65535)
PICKED_PORTS_FROM = 10000
_random = random.SystemRandom()  # not the `random` module's state: tests may seed it


def _load_prctl() -> Callable[..., int] | None:
    # Loaded once in the parent: dlopen() between fork and exec could deadlock on a lock held by
    # another thread, a plain foreign call cannot.
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except OSError:
        return None


_prctl = _load_prctl()


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies (Linux only)."""
    if _prctl is None:
        return None
    parent = os.getpid()
    prctl = _prctl

    def _hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return _hook


def popen_child(
    argv: list[str], env: dict[str, str] | None = None, *, pipe_output: bool = True, cwd: Path = REPO_ROOT
) -> subprocess.Popen[bytes]:
    """Start a child in its own session that dies with its parent; output piped or discarded."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env if env is not None else dict(os.environ),
        stdout=subprocess.PIPE if pipe_output else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if pipe_output else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent_hook(),  # only prctl and getppid run between fork and exec
    )


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL after the grace period."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    # A process group may hold workers whose leader already left (gunicorn): sweep it.
    kill_group(proc.pid)


def process_group_members(pgid: int) -> list[int]:
    """Live pids in a process group (Linux ``/proc``; empty elsewhere)."""
    return [pid for pid, info in _proc_stats().items() if info[1] == pgid]


def descendants(pid: int) -> list[int]:
    """Live pids below ``pid`` in the process tree (Linux ``/proc``; empty elsewhere)."""
    stats = _proc_stats()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, info in stats.items() if info[0] == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _proc_stats() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every live, non-zombie process."""
    stats: dict[int, tuple[int, int]] = {}
    if not PROC.is_dir():
        return stats
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces or parentheses.
        fields = raw[raw.rfind(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            continue
        stats[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return stats


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    """Nothing listens on host:port (a server could bind it now)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ephemeral_port_range() -> tuple[int, int]:
    """The ports (first, last) the kernel gives a socket that connects or binds without one.

    Linux's ``ip_local_port_range``; elsewhere 32768-65535, which covers Linux's default and the
    IANA range 49152-65535 that macOS and Windows use."""
    try:
        first, last = (int(field) for field in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return FALLBACK_EPHEMERAL_RANGE
    return first, last


def free_port() -> int:
    """A port a server could bind on 127.0.0.1 now, chosen outside the ephemeral range.

    A port the kernel picks (bind to port 0) lies in the ephemeral range: any outgoing connection
    on the machine may get it as its local port between the choice and a server binding it, or
    while a server restarts on it, and the server's bind then fails. Outside that range only an
    explicit bind takes a port. Chosen at random, so that concurrent test runs rarely try the same
    one; the kernel's pick only when the ephemeral range leaves no port from ``PICKED_PORTS_FROM``."""
    first, last = ephemeral_port_range()
    outside = [*range(PICKED_PORTS_FROM, min(first, 65536)), *range(max(last + 1, PICKED_PORTS_FROM), 65536)]
    for _ in range(min(len(outside), 100)):
        port = _random.choice(outside)
        if port_is_free("127.0.0.1", port):
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_healthy(base_url: str, timeout: float = 1.0) -> bool:
    """True when ``<base_url>/health`` answers 200 (the launcher's and the tests' probe)."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False
