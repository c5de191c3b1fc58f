"""End to end through the real launcher: all five services, one login seen everywhere, restarts, stop.

One suite start for the module; the tests run in file order and the last one stops the suite.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import httpx
import pytest

from common.processes import ephemeral_port_range, port_is_free, process_group_members, service_healthy
from tests.accounts import assert_logout_revokes_the_token_at_mobile_service
from tests.fixtures.launcher import Suite
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

SERVICES = ["user_service", "mobile_service", "llm_service", "image_service", "web_service"]


@pytest.fixture(scope="module")
def suite(launch_suite: Callable[..., Suite]) -> Suite:
    started = launch_suite()
    assert started.wait_for_output("all services started"), started.text()[-3000:]
    return started


def test_all_five_services_are_healthy_and_listed_in_the_ready_table(suite: Suite) -> None:
    lines = suite.text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["service", "url", "docs"])
    table = lines[header : header + 12]
    for name in SERVICES:
        url = suite.url(name)
        assert service_healthy(url)
        row = next((line for line in table if line.startswith(name)), None)
        assert row is not None, "\n".join(table)
        docs = f"{url}/" if name == "web_service" else f"{url}/docs"
        assert row.split()[1:4] == [url, docs, "healthy"], row
        assert row.split()[4].endswith("s"), row  # the time it took, e.g. "3.2s"
    redis_row = next(line for line in table if line.startswith("redis"))
    assert suite.env["REDIS_URL"] in redis_row and "configured (REDIS_URL)" in redis_row
    # Each child's output is relayed line by line, prefixed with its name.
    for name in SERVICES:
        assert any(line.startswith(f"{name:<15}| ") for line in lines), name


def test_a_token_from_user_service_works_at_mobile_service_until_logout(suite: Suite) -> None:
    assert_logout_revokes_the_token_at_mobile_service(suite)


def test_killed_children_are_restarted_and_healthy_again(suite: Suite) -> None:
    # web_service is a gunicorn master with workers: the hardest child to restart cleanly.
    # Ports outside the ephemeral range: no client socket can take one while its service is down.
    first, last = ephemeral_port_range()
    for name in SERVICES:
        port = int(suite.url(name).rsplit(":", 1)[1])
        assert not first <= port <= last, f"{name}'s port {port} is in the ephemeral range {first}-{last}"
    old = {name: suite.pid_of(name) for name in ("user_service", "web_service")}
    old_web_group = process_group_members(old["web_service"])
    assert len(old_web_group) >= 2, "gunicorn master and at least one worker"
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)

    def restarted(name: str) -> bool:
        try:
            return suite.pid_of(name) != old[name] and service_healthy(suite.url(name))
        except AssertionError:
            return False

    assert wait_until(lambda: all(restarted(n) for n in old)), suite.text()[-4000:]
    for name in old:
        assert suite.wait_for_output(f"{name} exited with code -9; restarting in", timeout=1)
    assert not set(old_web_group) & set(suite.child_pids()), "orphaned gunicorn workers were swept"
    # The restarted user_service issues and checks tokens as before.
    assert_logout_revokes_the_token_at_mobile_service(suite)


def test_sigterm_stops_every_child_and_frees_every_port(suite: Suite) -> None:
    children = suite.child_pids()
    groups = [suite.pid_of(name) for name in SERVICES]  # each service leads its own process group
    web_group = process_group_members(suite.pid_of("web_service"))
    assert len(web_group) >= 2 and set(web_group) <= set(children)
    assert suite.leftovers(), "the suite's processes carry its SUITE_ID"

    fake_llm = [line.split()[1] for line in suite.text().splitlines() if line.startswith("fake_llm ")]
    suite.proc.send_signal(signal.SIGTERM)
    assert suite.wait_exit(60) == 0, suite.text()[-3000:]

    assert suite.leftovers() == [], "a process of the suite outlived the launcher"
    assert all(process_group_members(pgid) == [] for pgid in groups)
    for name in SERVICES:
        port = int(suite.url(name).rsplit(":", 1)[1])
        assert port_is_free("127.0.0.1", port), f"{name}'s port {port} still bound"
    for url in fake_llm:  # the canned LLM upstream, when the launcher started one
        port = httpx.URL(url).port
        assert port is not None and port_is_free("127.0.0.1", port), f"fake LLM port {port} still bound"
    assert "received SIGTERM; stopping services" in suite.text()
    assert "again; killing every child now" not in suite.text()
    assert "all services stopped" in suite.text()
