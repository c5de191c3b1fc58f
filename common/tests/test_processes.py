"""``free_port``: ports outside the kernel's ephemeral range, which no outgoing connection can take
between the choice and a server binding it (or rebinding it on a restart)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from common import processes
from common.processes import ephemeral_port_range, free_port, port_is_free


def test_the_ephemeral_range_is_the_kernels_own() -> None:
    first, last = ephemeral_port_range()
    assert 1 <= first <= last <= 65535
    if sys.platform.startswith("linux"):
        assert f"{first}\t{last}" == Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().strip()


def test_without_the_kernels_range_the_fallback_covers_the_usual_ranges(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(processes, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    first, last = ephemeral_port_range()
    assert first <= 32768 and last == 65535  # Linux's default and IANA's 49152-65535 (macOS, Windows)


def test_free_ports_lie_outside_the_ephemeral_range_and_can_be_served_on() -> None:
    first, last = ephemeral_port_range()
    for _ in range(50):
        port = free_port()
        assert not first <= port <= last, f"{port} is in the ephemeral range {first}-{last}"
        assert port >= processes.PICKED_PORTS_FROM
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()


def test_a_port_an_outgoing_connection_holds_is_not_free() -> None:
    # What an ephemeral port grabbed by a client looks like to a server that wants to bind it.
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.connect(server.getsockname())
        assert not port_is_free("127.0.0.1", client.getsockname()[1])


def test_with_no_port_outside_the_ephemeral_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "ephemeral_port_range", lambda: (1024, 65535))
    port = free_port()
    assert port_is_free("127.0.0.1", port)
