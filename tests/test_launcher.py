"""The launcher as a user runs it: --help, subsets, busy ports, crash loops, Ctrl-C, the first run,
the local Redis fallbacks (redis-server, fakeredis) and a launcher killed outright."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values

from common.config import REPO_ROOT
from common.processes import free_port, popen_child, port_answers, port_is_free, service_healthy, stop_process
from tests.accounts import assert_logout_revokes_the_token_at_mobile_service
from tests.fixtures.launcher import Suite
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

ALL_SERVICES = ["user_service", "mobile_service", "llm_service", "image_service", "web_service"]
FAKE_LLM_EXISTS = (REPO_ROOT / "devtools" / "fake_llm.py").exists()
# What a fresh clone does not have: git metadata, the venv, local state, secrets.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "data", "logs", ".env", "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules"
)


def port_of(suite: Suite, service: str) -> int:
    return int(suite.url(service).rsplit(":", 1)[1])


def table_rows(suite: Suite) -> dict[str, str]:
    """The ready table's rows by their first cell."""
    lines = suite.text().splitlines()
    header = max(i for i, line in enumerate(lines) if line.split()[:3] == ["service", "url", "docs"])
    rows = {}
    for line in lines[header + 2 :]:
        if not line.strip():
            break
        if not line.startswith("-"):
            rows[line.split()[0]] = line
    return rows


def assert_nothing_left(suite: Suite) -> None:
    assert suite.leftovers() == [], f"processes outlived the launcher:\n{suite.text()[-3000:]}"
    for name in ALL_SERVICES:
        assert port_is_free("127.0.0.1", port_of(suite, name)), f"{name}'s port is still bound"


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A copy of the working tree as a fresh clone would have it: no .env, no data, no venv."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT, root, ignore=NOT_IN_A_CLONE)
    return root


def test_help_explains_how_to_start_all_or_some_services() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for name in ALL_SERVICES:
        assert name in result.stdout
    assert "Ctrl-C" in result.stdout and "_PYTHON" in result.stdout


def test_an_unknown_service_is_refused_with_the_valid_names() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), "user_service", "no_such_service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no_such_service" in result.stderr and "mobile_service" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLM_SERVICE_PYTHON": "no-such-python"}, "LLM_SERVICE_PYTHON=no-such-python is not an executable"),
        ({"ENV": "production", "SECRET_KEY": "short"}, "set SECRET_KEY"),
        ({"LOCAL_REDIS_PROBE": "127.0.0.1:x"}, "LOCAL_REDIS_PROBE must be host:port"),
        (
            {"DATABASE_URL": "postgresql+asyncpg://app:hunter2-secret@127.0.0.1:1/app"},
            "cannot create the tables in postgresql+asyncpg://app:***@127.0.0.1:1/app",
        ),
    ],
    ids=["missing-interpreter", "production-with-a-short-secret", "bad-probe-address", "unreachable-database"],
)
def test_a_configuration_error_is_named_and_nothing_is_started(
    launch_suite: Callable[..., Suite], env: dict[str, str], message: str
) -> None:
    suite = launch_suite(env=env, wait=False)
    assert suite.wait_exit(60) == 2, suite.text()
    assert "ERROR" in suite.text() and message in suite.text()
    assert "hunter2" not in suite.text()
    assert suite.leftovers() == []


def test_a_busy_port_is_named_and_nothing_is_started(launch_suite: Callable[..., Suite]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        suite = launch_suite(env={"MOBILE_SERVICE_PORT": str(busy)}, wait=False)
        code = suite.wait_exit(60)
    assert code == 2, suite.text()
    assert f"port {busy} on 127.0.0.1 (mobile_service) is already in use" in suite.text()
    assert "nothing was started" in suite.text()
    assert suite.leftovers() == []
    for name in ALL_SERVICES:
        if name != "mobile_service":
            assert port_is_free("127.0.0.1", port_of(suite, name))


def test_a_subset_starts_only_the_named_services_and_ctrl_c_stops_them(
    launch_suite: Callable[..., Suite], repo_copy: Path
) -> None:
    no_redis = {"REDIS_URL": None, "LOCAL_REDIS_PROBE": "off"}  # a redis-server child when on PATH
    no_llm = {"LLM_API_KEY": None, "LLM_BASE_URL": None}
    suite = launch_suite("user_service", "llm_service", root=repo_copy, env={**no_redis, **no_llm})
    assert suite.wait_for_output("all services started"), suite.text()[-3000:]
    rows = table_rows(suite)
    if shutil.which("redis-server"):
        assert "redis-server started on 127.0.0.1:" in rows["redis"]
    assert {"user_service", "llm_service"} <= set(rows)
    for name in ("mobile_service", "image_service", "web_service"):
        assert name not in rows
        assert not port_answers("127.0.0.1", port_of(suite, name))
    fake_port = None
    if FAKE_LLM_EXISTS:
        # No LLM key: the canned upstream runs, the launcher says so loudly, llm_service gets its URL.
        assert "Replies are CANNED test text" in suite.text()
        fake_row = rows["fake_llm"]
        assert "CANNED" in fake_row and "healthy" in fake_row
        fake_url = httpx.URL(fake_row.split()[1])
        fake_port = fake_url.port
        assert httpx.get(fake_url.join("/health")).status_code == 200

    os.killpg(suite.proc.pid, signal.SIGINT)  # what Ctrl-C at a terminal sends
    assert suite.wait_exit(60) == 0, suite.text()[-3000:]
    assert "received SIGINT; stopping services" in suite.text()
    assert_nothing_left(suite)
    if fake_port is not None:
        assert not port_answers("127.0.0.1", fake_port)


def test_a_crash_loop_is_given_up_loudly_while_the_others_keep_running(
    launch_suite: Callable[..., Suite], tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    crashing_python = tmp_path / "crashing-python"
    crashing_python.write_text(f'#!/bin/sh\necho "started with $1" >> {runs}\nexit 1\n')
    crashing_python.chmod(0o755)
    suite = launch_suite(
        "user_service",
        "image_service",
        env={
            "IMAGE_SERVICE_PYTHON": str(crashing_python),
            "LAUNCHER_MAX_RESTARTS": "2",
            "LAUNCHER_BACKOFF_SECONDS": "0.1",
            "LLM_API_KEY": "a-configured-key",  # a configured provider: no canned upstream
        },
        wait=False,
    )
    assert suite.wait_for_output("GIVING UP on image_service", timeout=90), suite.text()[-3000:]
    assert "CRASH LOOP: image_service died 3 times" in suite.text()
    # <SERVICE>_PYTHON was the interpreter each time: the first start and two restarts.
    started = runs.read_text().splitlines()
    assert started == [f"started with {REPO_ROOT / 'image_service' / 'main.py'}"] * 3
    rows = table_rows(suite)
    assert "NOT READY" in rows["image_service"] and "exited (1)" in rows["image_service"]
    assert "healthy" in rows["user_service"]
    assert "fake_llm" not in rows and "CANNED" not in suite.text()

    time.sleep(1.0)  # the launcher stays up for the healthy service ...
    assert suite.proc.poll() is None
    assert service_healthy(suite.url("user_service"))
    assert len(runs.read_text().splitlines()) == 3  # ... and does not try the given-up one again
    assert suite.stop() == 0
    assert_nothing_left(suite)


def test_when_every_service_is_given_up_the_launcher_stops_with_exit_code_1(
    launch_suite: Callable[..., Suite], repo_copy: Path, tmp_path: Path
) -> None:
    crashing_python = tmp_path / "crashing-python"
    crashing_python.write_text("#!/bin/sh\nexit 3\n")
    crashing_python.chmod(0o755)
    env = {
        "IMAGE_SERVICE_PYTHON": str(crashing_python),
        "LAUNCHER_MAX_RESTARTS": "1",
        "LAUNCHER_BACKOFF_SECONDS": "0.1",
        "LLM_API_KEY": None,  # image_service alone also gets the canned LLM upstream
        "LLM_BASE_URL": None,
    }
    suite = launch_suite("image_service", root=repo_copy, env=env, wait=False)
    assert suite.wait_exit(90) == 1, suite.text()[-3000:]
    assert "GIVING UP on image_service" in suite.text()
    assert "every service has been given up; stopping" in suite.text()
    if FAKE_LLM_EXISTS:
        assert "Replies are CANNED test text" in suite.text()
    assert_nothing_left(suite)


def test_first_run_writes_env_and_fakeredis_serves_login_and_revocation(
    launch_suite: Callable[..., Suite], repo_copy: Path, tmp_path: Path
) -> None:
    empty_bin = tmp_path / "bin-without-redis-server"
    empty_bin.mkdir()
    suite = launch_suite(
        "user_service",
        "mobile_service",
        root=repo_copy,
        env={
            "SECRET_KEY": None,  # from the .env the first run writes
            "REDIS_URL": None,
            "LOCAL_REDIS_PROBE": "off",
            "PATH": str(empty_bin),
        },
    )
    assert suite.wait_for_output("all services started"), suite.text()[-3000:]
    assert "first run: wrote .env with a freshly generated SECRET_KEY" in suite.text()
    secret = dotenv_values(repo_copy / ".env").get("SECRET_KEY") or ""
    assert len(secret) >= 32
    assert (repo_copy / ".env").stat().st_mode & 0o077 == 0, ".env is private to its owner"
    assert "fakeredis" in table_rows(suite)["redis"]
    # Both services verify tokens with the generated secret and see revocations through fakeredis.
    assert_logout_revokes_the_token_at_mobile_service(suite)
    assert suite.stop() == 0
    assert_nothing_left(suite)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server on PATH")
def test_a_killed_launcher_leaves_nothing_behind(launch_suite: Callable[..., Suite], repo_copy: Path) -> None:
    suite = launch_suite(
        "user_service",
        "llm_service",
        "web_service",
        root=repo_copy,
        env={"REDIS_URL": None, "LOCAL_REDIS_PROBE": "off", "LLM_API_KEY": None, "LLM_BASE_URL": None},
    )
    assert suite.wait_for_output("all services started"), suite.text()[-3000:]
    redis_row = table_rows(suite)["redis"]
    assert "redis-server started on 127.0.0.1:" in redis_row
    redis_pid = int(redis_row.split("(pid ")[1].split(")")[0])
    children = suite.child_pids()
    assert redis_pid in children
    assert len(children) >= 5  # three services, a gunicorn worker, redis-server (and the canned LLM)
    assert service_healthy(suite.url("web_service"))

    suite.proc.send_signal(signal.SIGKILL)  # no chance to stop anything itself
    suite.wait_exit(10)
    assert wait_until(lambda: suite.leftovers() == [], timeout=60), f"left behind: {suite.leftovers()}"
    assert_nothing_left(suite)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_the_ready_table_never_shows_the_redis_password(launch_suite: Callable[..., Suite]) -> None:
    port = free_port()
    redis = popen_child(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--requirepass", "hunter2"],
        pipe_output=False,
    )
    try:
        wait_until(lambda: port_answers("127.0.0.1", port), timeout=10)
        suite = launch_suite("user_service", env={"REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0"})
        assert suite.wait_for_output("all services started"), suite.text()[-3000:]
        row = table_rows(suite)["redis"]
        assert f"redis://:***@127.0.0.1:{port}/0" in row
        assert "hunter2" not in suite.text()
        # The services got the real URL: a login (Redis-backed limit) works.
        user_url = suite.url("user_service")
        creds = {"username": "table_check", "password": "long enough password"}
        assert httpx.post(f"{user_url}/api/v1/auth/register", json=creds, timeout=10).status_code == 201
        assert httpx.post(f"{user_url}/api/v1/auth/login", json=creds, timeout=10).status_code == 200
        suite.stop()
        assert_nothing_left(suite)
    finally:
        stop_process(redis, grace=3.0)


def test_a_restart_waits_while_another_process_holds_the_port_instead_of_crash_looping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import main as launcher_main

    settings = launcher_main.LauncherSettings(launcher_backoff_seconds=0.0, launcher_max_restarts=1)
    launcher = launcher_main.Launcher(["image_service"], settings)
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.connect(server.getsockname())  # the kernel gives it a local port, as any client gets
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # no TIME_WAIT
        port = client.getsockname()[1]
        child = launcher_main.Child(
            name="image_service",
            argv=[sys.executable, "-c", "pass"],
            env=dict(os.environ),
            url=f"http://127.0.0.1:{port}",
            colour="",
        )
        child.start()
        first = child.proc
        assert first is not None and first.wait(timeout=60) == 0
        launcher._check(child)  # it exited: a restart is due at once (no backoff)
        for _ in range(3):
            launcher._check(child)
        assert child.proc is first, "not started while its port is taken: it could only fail to bind"
        assert child.restarts == [] and not child.gave_up
    launcher._check(child)  # the port is free again: restarted, on the port it was configured with
    assert child.proc is not first and child.restarts and child.url == f"http://127.0.0.1:{port}"
    assert child.proc is not None and child.proc.wait(timeout=60) == 0
    out = capsys.readouterr().out
    message = f"cannot restart image_service: port {port} on 127.0.0.1 is in use by another process"
    assert out.count(message) == 1, out
    assert "(or set IMAGE_SERVICE_PORT and start the launcher again)" in out
    assert f"port {port} on 127.0.0.1 is free again; restarting image_service" in out
