"""Replicas behave as one (docs/api.md §13): two mobile_service, two llm_service and two image_service
processes on different ports, each pair behind the tiny round-robin balancer of
``deploy/round_robin.py``, sharing one database, one Redis and one S3 bucket (moto's server), as
they would on several machines. A user's flow — login, records, a chat session continued across
replicas, images uploaded on one replica and served by the other (each with a storage directory of
its own), logout revocation — gives the same answers as with one replica.

The database is migrated first (the compose prestart step); it is a throwaway PostgreSQL database
where a server answers, else a SQLite file shared by the processes.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from common.config import REPO_ROOT
from common.migrations import upgrade_to_head
from common.processes import free_port, popen_child, service_healthy, stop_process
from tests.auth import bearer
from tests.s3_server import S3Server

pytestmark = pytest.mark.e2e

TEST_SECRET = "replica-test-secret-0123456789abcdefghijklmnopq"
START_TIMEOUT_SECONDS = 90.0
PASSWORD = "replica pass 123"


@dataclass
class Process:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: list[str] = field(default_factory=list)

    def collect(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.log.append(raw.decode("utf-8", "replace"))


@dataclass
class Deployment:
    user: str
    mobile: str  # the balancer in front of the mobile_service replicas
    llm: str  # the balancer in front of the llm_service replicas
    mobile_replicas: list[str]
    llm_replicas: list[str]
    image_replicas: list[str]
    image_dirs: list[Path]  # each image_service replica's own IMAGE_STORAGE_DIR
    bucket: str


@pytest.fixture(scope="module")
def llm_upstream(fake_llm_url: str) -> str:
    """The project's canned OpenAI-protocol upstream (the root conftest starts it)."""
    return fake_llm_url


@pytest.fixture(scope="module")
def deployment(
    redis_url: str,
    reachable_postgres: Any,
    llm_upstream: str,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("replicas")
    database = (
        reachable_postgres.create_database()
        if reachable_postgres is not None
        else f"sqlite+aiosqlite:///{tmp / 'app.db'}"
    )
    upgrade_to_head(database)  # the prestart step

    names = ("user", "mobile_rr", "llm_rr", "image_rr", "mobile_a", "mobile_b", "llm_a", "llm_b", "image_a", "image_b")
    ports = {name: free_port() for name in names}
    bucket = f"replicas-{uuid.uuid4().hex[:10]}"
    image_dirs = {replica: tmp / f"images-{replica}" for replica in ("a", "b")}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    base_env = {k: v for k, v in os.environ.items() if not (k.endswith("_SERVICE_URL") or k.endswith("_PORT"))}
    base_env.update(
        {
            "DATABASE_URL": database,
            "REDIS_URL": redis_url,
            "SECRET_KEY": TEST_SECRET,
            "HOST": "127.0.0.1",
            "LOG_DIR": str(tmp / "logs"),
            "IMAGE_STORAGE_DIR": str(tmp / "images"),
            "LLM_BASE_URL": llm_upstream,
            "LLM_API_KEY": "replica-test-llm-key",
            "PYTHONUNBUFFERED": "1",
            # Every service reaches the replicated ones through their balancer, as behind a real LB.
            "USER_SERVICE_URL": url["user"],
            "MOBILE_SERVICE_URL": url["mobile_rr"],
            "LLM_SERVICE_URL": url["llm_rr"],
            "IMAGE_SERVICE_URL": url["image_rr"],
            "WEB_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    processes: list[Process] = []

    def start(name: str, argv: list[str], port: int, extra: dict[str, str] | None = None) -> None:
        proc = popen_child(argv, {**base_env, **(extra or {}), "PORT": str(port)})
        process = Process(name, f"http://127.0.0.1:{port}", proc)
        threading.Thread(target=process.collect, daemon=True).start()
        processes.append(process)

    def service(name: str) -> list[str]:
        return [sys.executable, str(REPO_ROOT / name / "main.py")]

    def balancer(name: str, replicas: list[str], port: int) -> list[str]:
        argv = [sys.executable, "-m", "deploy.round_robin", "--name", name, "--port", str(port)]
        for replica in replicas:
            argv += ["--upstream", replica]
        return argv

    try:
        start("user_service", service("user_service"), ports["user"])
        for replica in ("a", "b"):
            start(f"mobile_{replica}", service("mobile_service"), ports[f"mobile_{replica}"])
            start(f"llm_{replica}", service("llm_service"), ports[f"llm_{replica}"])
            image_env = {**s3_server.env(bucket), "IMAGE_STORAGE_DIR": str(image_dirs[replica])}
            start(f"image_{replica}", service("image_service"), ports[f"image_{replica}"], image_env)
        start(
            "mobile_rr", balancer("mobile", [url["mobile_a"], url["mobile_b"]], ports["mobile_rr"]), ports["mobile_rr"]
        )
        start("llm_rr", balancer("llm", [url["llm_a"], url["llm_b"]], ports["llm_rr"]), ports["llm_rr"])
        start("image_rr", balancer("image", [url["image_a"], url["image_b"]], ports["image_rr"]), ports["image_rr"])
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not all(service_healthy(p.url) for p in processes):
            for p in processes:
                assert p.proc.poll() is None, f"{p.name} exited {p.proc.returncode}:\n{''.join(p.log[-40:])}"
            time.sleep(0.2)
        assert all(service_healthy(p.url) for p in processes), "replicas did not start"
        yield Deployment(
            user=url["user"],
            mobile=url["mobile_rr"],
            llm=url["llm_rr"],
            mobile_replicas=[url["mobile_a"], url["mobile_b"]],
            llm_replicas=[url["llm_a"], url["llm_b"]],
            image_replicas=[url["image_a"], url["image_b"]],
            image_dirs=[image_dirs["a"], image_dirs["b"]],
            bucket=bucket,
        )
    finally:
        for p in processes:
            stop_process(p.proc, grace=15.0)
        if reachable_postgres is not None:
            reachable_postgres.drop_database(database)


@pytest.fixture(scope="module")
def login(deployment: Deployment) -> Callable[[], dict[str, str]]:
    def _login() -> dict[str, str]:
        name = f"r_{uuid.uuid4().hex[:10]}"
        with httpx.Client(base_url=deployment.mobile, timeout=30) as client:
            assert (
                client.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD}).status_code == 201
            )
            tokens = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
            assert tokens.status_code == 200, tokens.text
        return bearer(tokens.json()["access_token"])

    return _login


def test_the_balancers_spread_requests_over_both_replicas(deployment: Deployment) -> None:
    seen_mobile = {httpx.get(f"{deployment.mobile}/health").headers["x-replica-mobile"] for _ in range(4)}
    seen_llm = {httpx.get(f"{deployment.llm}/health").headers["x-replica-llm"] for _ in range(4)}
    assert seen_mobile == set(deployment.mobile_replicas)
    assert seen_llm == set(deployment.llm_replicas)


def test_records_written_on_one_replica_are_read_and_versioned_on_the_other(
    deployment: Deployment, login: Callable[[], dict[str, str]]
) -> None:
    headers = login()
    with httpx.Client(base_url=deployment.mobile, headers=headers, timeout=30) as client:
        created = client.post("/api/v1/records", json={"title": "Replicated", "content": "one", "tags": ["Rep"]})
        assert created.status_code == 201, created.text
        record = created.json()
        reads = [client.get(f"/api/v1/records/{record['id']}") for _ in range(2)]
        assert {r.headers["x-replica-mobile"] for r in [created, *reads]} == set(deployment.mobile_replicas)
        assert all(r.status_code == 200 and r.json()["title"] == "Replicated" for r in reads)

        updated = client.patch(f"/api/v1/records/{record['id']}", json={"content": "two", "version": record["version"]})
        assert updated.status_code == 200, updated.text
        stale = client.patch(f"/api/v1/records/{record['id']}", json={"content": "three", "version": record["version"]})
        assert stale.status_code == 409 and stale.json()["code"] == "conflict"
        assert updated.headers["x-replica-mobile"] != stale.headers["x-replica-mobile"]

        listed = [client.get("/api/v1/records", params={"tag": "rep"}).json() for _ in range(2)]
        assert all(page["total_count"] == 1 and page["data"][0]["content"] == "two" for page in listed)

        changes = client.get("/api/v1/sync/changes").json()
        assert [(c["id"], c["version"]) for c in changes["changes"]] == [(record["id"], record["version"] + 1)]


def test_a_chat_session_continues_across_llm_replicas(
    deployment: Deployment, login: Callable[[], dict[str, str]]
) -> None:
    headers = login()
    with httpx.Client(base_url=deployment.llm, headers=headers, timeout=60) as client:
        session = client.post("/api/v1/chat/sessions", json={"title": "Across replicas"})
        assert session.status_code == 201, session.text
        session_id = session.json()["id"]
        served_by = set()
        for text in ("first question", "second question"):
            reply = client.post(f"/api/v1/chat/sessions/{session_id}/messages", json={"content": text})
            assert reply.status_code == 200, reply.text
            served_by.add(reply.headers["x-replica-llm"])
        assert served_by == set(deployment.llm_replicas)
        for replica in deployment.llm_replicas:
            detail = httpx.get(f"{replica}/api/v1/chat/sessions/{session_id}", headers=headers, timeout=30)
            assert detail.status_code == 200
            messages = detail.json()["messages"]
            assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
            assert [messages[0]["content"], messages[2]["content"]] == ["first question", "second question"]


def test_the_mobile_app_reaches_chat_and_ai_through_either_replica(
    deployment: Deployment, login: Callable[[], dict[str, str]]
) -> None:
    headers = login()
    with httpx.Client(base_url=deployment.mobile, headers=headers, timeout=60) as client:
        record = client.post("/api/v1/records", json={"title": "To summarise", "content": "A long text. " * 20}).json()
        for _ in range(2):
            summary = client.post(f"/api/v1/records/{record['id']}/ai/summarize")
            assert summary.status_code == 200, summary.text
        sessions = [client.get("/api/v1/chat/sessions") for _ in range(2)]
        assert all(s.status_code == 200 for s in sessions)


def test_an_image_uploaded_on_one_replica_is_served_by_the_other(
    deployment: Deployment, login: Callable[[], dict[str, str]], s3_server: S3Server
) -> None:
    """Each image_service replica has a storage directory of its own, as on two machines: only the
    bucket is shared. The second replica never saw the upload and serves it."""
    headers = login()
    first, second = deployment.image_replicas
    picture = io.BytesIO()
    Image.new("RGB", (640, 480), (20, 140, 90)).save(picture, format="PNG")
    with httpx.Client(headers=headers, timeout=60) as client:
        created = client.post(f"{first}/api/v1/images", files={"file": ("shared.png", picture.getvalue(), "image/png")})
        assert created.status_code == 201, created.text
        image = created.json()
        assert f"originals/{image['id'][:2]}/{image['id']}.png" in {
            o["Key"] for o in s3_server.client().list_objects_v2(Bucket=deployment.bucket).get("Contents", [])
        }
        content = client.get(f"{second}{image['url']}")
        assert content.status_code == 200 and content.headers["content-type"] == "image/png"
        assert hashlib.sha256(content.content).hexdigest() == image["sha256"]
        thumbnail = client.get(f"{second}{image['thumbnail_url']}")
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/webp"
        # Through the mobile app's entry (mobile_service → the image balancer → either replica).
        listed = client.get(f"{deployment.mobile}/api/v1/images")
        assert listed.status_code == 200 and image["id"] in [i["id"] for i in listed.json()["data"]]
        # Neither directory holds the image: the bytes live in the bucket only.
        assert not [p for d in deployment.image_dirs for p in d.rglob(f"{image['id']}*")]

        assert client.delete(f"{second}/api/v1/images/{image['id']}").status_code == 204
        assert client.get(f"{first}{image['url']}").status_code == 404
        left = s3_server.client().list_objects_v2(Bucket=deployment.bucket).get("Contents", [])
        assert not [o for o in left if image["id"] in o["Key"]]


def test_logout_on_one_replica_revokes_the_token_on_every_replica(
    deployment: Deployment, login: Callable[[], dict[str, str]]
) -> None:
    headers = login()
    for replica in [*deployment.mobile_replicas, *deployment.llm_replicas]:
        path = "/api/v1/records" if replica in deployment.mobile_replicas else "/api/v1/chat/sessions"
        assert httpx.get(f"{replica}{path}", headers=headers, timeout=30).status_code == 200
    out = httpx.post(f"{deployment.mobile}/api/v1/auth/logout", headers=headers, timeout=30)
    assert out.status_code == 204, out.text
    for replica in [*deployment.mobile_replicas, *deployment.llm_replicas]:
        path = "/api/v1/records" if replica in deployment.mobile_replicas else "/api/v1/chat/sessions"
        refused = httpx.get(f"{replica}{path}", headers=headers, timeout=30)
        assert refused.status_code == 401, (replica, refused.text)
        assert refused.json()["code"] == "invalid_token"
