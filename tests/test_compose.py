"""docker-compose.yml is coherent: its commands and environment start a working suite.

No Docker engine runs here, so this test plays compose's part on one machine: it parses the file
(PyYAML), interpolates ``${...}`` like compose, builds each container's environment from the
Dockerfile's ENV, the ``env_file`` files and ``environment``, and maps the compose hostnames to this
machine (postgres → a throwaway database on the local PostgreSQL, or a SQLite file where none
answers; redis → this run's Redis database; minio → this run's S3 server, moto; each service →
127.0.0.1 on a free port; volumes → temp dirs). Commands run from a copy of the Docker build context made with the .dockerignore rules, in
compose's start order (``depends_on`` conditions, healthchecks run as written), then the smoke
flow: register → login → create record → summarise through llm_service → publish → public page
through web_service, and an image uploaded through mobile_service that lands in the bucket.
A typo in the compose file (a hostname, a port, a key, a command) fails here.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dotenv import dotenv_values
from PIL import Image
from sqlalchemy.engine import make_url

from common.config import REPO_ROOT
from common.processes import free_port, popen_child, stop_process
from tests.auth import bearer
from tests.s3_server import S3Server

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
APP_SERVICES = ["user_service", "mobile_service", "llm_service", "image_service", "web_service"]
# What the operator exports before `docker compose up` (LLM_API_KEY: any key works with the canned upstream).
COMPOSE_SECRETS = {
    "SECRET_KEY": "compose-test-secret-0123456789abcdefghijklmnop",
    "POSTGRES_PASSWORD": "pw-test",
    "LLM_API_KEY": "compose-test-llm-key",
    "MINIO_ROOT_PASSWORD": "minio-pw-test",
}
START_TIMEOUT_SECONDS = 90.0

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# ---------------------------------------------------------------- reading the files like compose


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation: ``$$``, ``${X}``, ``${X:-default}``, ``${X:?error}``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def _one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op in ("-", ":-"):
            return arg if missing else str(current)
        if op in ("?", ":?"):
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return str(current)
        return "" if current is None else str(current)

    return _VARIABLE.sub(_one, value)


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(raw, env)


def dockerfile_env() -> tuple[str, dict[str, str]]:
    """The image's WORKDIR and ENV (as a container starts with them)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    workdir, env = "/", {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "WORKDIR":
            workdir = words[1]
        elif words[0].upper() == "ENV":
            for pair in words[1:]:
                key, _, value = pair.partition("=")
                env[key] = value.strip('"')
    return workdir, env


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over a relative path (``**`` spans folders)."""
    pattern, out, i = pattern.strip("/"), "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(rf"^{out}(?:/.*)?$")


def copy_build_context(target: Path) -> Path:
    """Copy what ``COPY . .`` would see: the repository less the .dockerignore rules."""
    rules = [
        (line.startswith("!"), _ignore_regex(line.lstrip("!")))
        for line in (x.strip() for x in DOCKERIGNORE.read_text().splitlines())
        if line and not line.startswith("#")
    ]

    def ignored(rel: str) -> bool:
        verdict = False
        for negated, regex in rules:
            if regex.match(rel):
                verdict = not negated
        return verdict

    for folder, dirs, files in os.walk(REPO_ROOT):
        rel_folder = Path(folder).relative_to(REPO_ROOT)
        dirs[:] = [d for d in dirs if not ignored((rel_folder / d).as_posix())]
        for name in files:
            rel = (rel_folder / name).as_posix()
            if not ignored(rel):
                (target / rel_folder).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder) / name, target / rel)
    return target


def container_environment(service: dict[str, Any], image_env: dict[str, str]) -> dict[str, str]:
    env = dict(image_env)
    for env_file in service.get("env_file", []) or []:
        path = REPO_ROOT / (env_file if isinstance(env_file, str) else env_file["path"])
        assert path.is_file(), f"env_file {path.relative_to(REPO_ROOT)} does not exist"
        env.update({k: v or "" for k, v in dotenv_values(path).items()})
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({k: "" if v is None else str(v) for k, v in environment.items()})
    return env


# ---------------------------------------------------------------- the file's shape


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE_SECRETS)


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(MissingVariable, match="set SECRET_KEY"):
        load_compose({"POSTGRES_PASSWORD": "x"})


def test_every_container_has_a_healthcheck_and_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(APP_SERVICES) | {"postgres", "redis", "minio", "prestart"} <= set(services)
    for name, service in services.items():
        if name != "prestart":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            wanted = "service_completed_successfully" if dependency == "prestart" else "service_healthy"
            assert spec["condition"] == wanted, f"{name} → {dependency}: {spec}"
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["prestart"]["condition"] == "service_completed_successfully"


def test_data_lives_in_named_volumes_and_redis_keeps_an_append_only_file(compose: dict[str, Any]) -> None:
    services, volumes = compose["services"], set(compose.get("volumes") or {})
    mounts = {
        name: {v.split(":")[0]: v.split(":")[1] for v in service.get("volumes", [])}
        for name, service in services.items()
    }
    assert set(mounts["postgres"]) & volumes and set(mounts["redis"]) & volumes and set(mounts["minio"]) & volumes
    command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in command
    # Images live in MinIO's volume: image_service itself keeps nothing (its replicas share the bucket).
    image_env = container_environment(services["image_service"], dockerfile_env()[1])
    assert image_env["IMAGE_STORAGE"] == "s3" and image_env["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["minio"]["command"][:2] == ["server", mounts["minio"][next(iter(set(mounts["minio"]) & volumes))]]
    assert not mounts["image_service"], "image_service needs no volume with IMAGE_STORAGE=s3"


def test_the_image_has_no_dev_tools_and_runs_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "requirements-dev" not in text
    # The dependency layer comes before the source, so a code change reuses it.
    assert text.index("pip install") < text.index("COPY . .")


def test_the_build_context_holds_the_runtime_source_and_no_tests_or_secrets(tmp_path: Path) -> None:
    context = copy_build_context(tmp_path / "app")
    for name in APP_SERVICES:
        assert (context / name / "main.py").is_file()
        assert not (context / name / "tests").exists() and not (context / name / ".env").exists()
    assert (context / "common" / "migrations.py").is_file() and (context / "migrations" / "env.py").is_file()
    assert (context / "requirements.txt").is_file() and not (context / ".env").exists()
    assert not (context / ".git").exists() and not (context / ".venv").exists()


def test_a_url_naming_a_service_on_a_port_it_does_not_serve_is_caught() -> None:
    hosts = {"user_service:8001": "127.0.0.1:1234"}
    assert _map_hosts("http://user_service:8001", hosts, {"user_service"}) == "http://127.0.0.1:1234"
    with pytest.raises(AssertionError, match="user_service"):
        _map_hosts("http://user_service:8010", hosts, {"user_service"})


# ---------------------------------------------------------------- running the file's commands


@dataclass
class Container:
    name: str
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None
    proc: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)
    last_check: str = ""

    def healthy(self, cwd: Path) -> bool:
        if self.healthcheck is None:
            return True
        done = subprocess.run(self.healthcheck, cwd=cwd, env=self.env, capture_output=True, timeout=10)
        self.last_check = done.stderr.decode("utf-8", "replace")[-500:]
        return done.returncode == 0

    def start(self, cwd: Path) -> None:
        self.proc = popen_child(self.argv, self.env, cwd=cwd)
        threading.Thread(target=self._collect, args=(self.proc,), daemon=True).start()

    def _collect(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self.log.append(raw.decode("utf-8", "replace"))

    def output(self) -> str:
        return "".join(self.log[-40:])


@dataclass
class ComposeRun:
    urls: dict[str, str]
    containers: dict[str, Container]
    workdir: Path


def _start_order(services: dict[str, Any]) -> list[str]:
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        assert name not in path, f"depends_on cycle: {' → '.join((*path, name))}"
        if name in order:
            return
        for dependency in services[name].get("depends_on") or {}:
            visit(dependency, (*path, name))
        order.append(name)

    for name in services:
        visit(name)
    return order


def _map_hosts(value: str, hosts: dict[str, str], known: set[str]) -> str:
    for source, target in hosts.items():
        value = value.replace(f"//{source}", f"//{target}")
    for match in re.finditer(r"://(?:[^@/\s]*@)?([A-Za-z0-9_.-]+)", value):
        host = match.group(1)
        assert host not in known, f"{value!r} names compose service {host} on a port it does not serve"
    return value


@pytest.fixture(scope="module")
def llm_upstream(fake_llm_url: str) -> str:
    """The project's canned OpenAI-protocol upstream (the root conftest starts it)."""
    return fake_llm_url


@pytest.fixture(scope="module")
def compose_run(
    compose: dict[str, Any],
    llm_upstream: str,
    redis_url: str,
    reachable_postgres: Any,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComposeRun]:
    services: dict[str, Any] = compose["services"]
    workdir = copy_build_context(tmp_path_factory.mktemp("image") / "app")
    _, image_env = dockerfile_env()
    known = set(services)

    # Each service's own port (its PORT), as the others must address it.
    envs = {name: container_environment(services[name], image_env) for name in services if "build" in services[name]}
    ports = {name: free_port() for name in APP_SERVICES}
    compose_ports = {name: envs[name]["PORT"] for name in APP_SERVICES}
    hosts = {f"{name}:{compose_ports[name]}": f"127.0.0.1:{ports[name]}" for name in APP_SERVICES}
    hosts["minio:9000"] = s3_server.url.removeprefix("http://")  # moto stands in for MinIO
    minio_env = services["minio"]["environment"]

    postgres_env = services["postgres"]["environment"]
    if reachable_postgres is not None:
        database = reachable_postgres.create_database()
    else:
        database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'app.db'}"
    volumes = {name: tmp_path_factory.mktemp(f"volume-{name}") for name in compose.get("volumes") or {}}

    containers: dict[str, Container] = {}
    for name, env in envs.items():
        url = make_url(env["DATABASE_URL"])
        assert (url.host, url.port or 5432) == ("postgres", 5432), f"{name}: DATABASE_URL host {url.host}:{url.port}"
        assert url.drivername == "postgresql+asyncpg"
        assert (url.username, url.password, url.database) == (
            postgres_env["POSTGRES_USER"],
            postgres_env["POSTGRES_PASSWORD"],
            postgres_env["POSTGRES_DB"],
        ), f"{name}: DATABASE_URL does not match the postgres service's user/password/database"
        assert env["REDIS_URL"].startswith("redis://redis:6379"), f"{name}: REDIS_URL {env['REDIS_URL']}"
        if env.get("IMAGE_STORAGE") == "s3":
            assert (env["S3_ACCESS_KEY_ID"], env["S3_SECRET_ACCESS_KEY"]) == (
                minio_env["MINIO_ROOT_USER"],
                minio_env["MINIO_ROOT_PASSWORD"],
            ), f"{name}: the S3 keys are not the minio service's"
        assert env["HOST"] == "0.0.0.0", f"{name}: HOST must be 0.0.0.0 in a container"
        env["DATABASE_URL"] = database
        env["REDIS_URL"] = redis_url
        env["HOST"] = "127.0.0.1"
        for volume in services[name].get("volumes", []):
            source, target = volume.split(":")[:2]
            for key, value in env.items():
                if value == target or value.startswith(target + "/"):
                    env[key] = str(volumes[source]) + value[len(target) :]
        for key, value in list(env.items()):
            env[key] = _map_hosts(value, hosts, known)
        env.update(
            {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(workdir),
                "LANG": "C.UTF-8",
                "LOG_DIR": str(workdir / "logs"),
            }
        )
        if name in ports:
            env["PORT"] = str(ports[name])
        if "LLM_API_KEY" in env:
            # What the operator adds in deploy/env/<service>.env for a real provider.
            env.setdefault("LLM_BASE_URL", llm_upstream)
        command = services[name]["command"]
        argv = command if isinstance(command, list) else command.split()
        argv = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
        check = (services[name].get("healthcheck") or {}).get("test")
        if check:
            assert check[0] == "CMD", f"{name}: the app image has no shell tools; use CMD"
            own = {f"127.0.0.1:{compose_ports[name]}": f"127.0.0.1:{ports[name]}"} if name in ports else {}
            check = [sys.executable if c == "python" else _map_hosts(c, own, known) for c in check[1:]]
        containers[name] = Container(name, argv, env, check)

    try:
        for name in _start_order(services):
            if name not in containers:
                continue  # postgres, redis and minio: the local servers stand in for them
            container = containers[name]
            for dependency, spec in (services[name].get("depends_on") or {}).items():
                if dependency in containers:
                    _wait_for(containers[dependency], spec["condition"], workdir)
            container.start(workdir)
        for container in containers.values():
            if container.name != "prestart":
                _wait_for(container, "service_healthy", workdir)
        yield ComposeRun({name: f"http://127.0.0.1:{port}" for name, port in ports.items()}, containers, workdir)
    finally:
        for container in containers.values():
            if container.proc is not None:
                stop_process(container.proc, grace=15.0)
        if reachable_postgres is not None:
            reachable_postgres.drop_database(database)


def _wait_for(container: Container, condition: str, workdir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    assert container.proc is not None, f"{container.name} was not started before its dependents"
    while time.monotonic() < deadline:
        code = container.proc.poll()
        if condition == "service_completed_successfully":
            if code is not None:
                assert code == 0, f"{container.name} exited {code}:\n{container.output()}"
                return
        else:
            assert code is None, f"{container.name} exited {code}:\n{container.output()}"
            if container.healthy(workdir):
                return
        time.sleep(0.3)
    raise AssertionError(
        f"{container.name} not {condition} within {START_TIMEOUT_SECONDS}s; healthcheck said:\n"
        f"{container.last_check}\noutput:\n{container.output()}"
    )


@pytest.mark.e2e
def test_prestart_migrated_the_database_and_every_service_is_ready(compose_run: ComposeRun) -> None:
    assert compose_run.containers["prestart"].proc is not None
    assert compose_run.containers["prestart"].proc.returncode == 0
    for name, url in compose_run.urls.items():
        ready = httpx.get(f"{url}/ready", timeout=10)
        body = ready.json()
        assert ready.status_code == 200 and body["status"] == "ok", f"{name}: {body}"
        assert body["checks"].get("redis") == "ok", name


@pytest.mark.e2e
def test_smoke_flow_through_the_compose_suite(compose_run: ComposeRun) -> None:
    mobile, web = compose_run.urls["mobile_service"], compose_run.urls["web_service"]
    name = f"c_{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=mobile, timeout=20) as client:
        registered = client.post("/api/v1/auth/register", json={"username": name, "password": "compose pass 123"})
        assert registered.status_code == 201, registered.text
        login = client.post("/api/v1/auth/login", json={"username": name, "password": "compose pass 123"})
        assert login.status_code == 200, login.text
        headers = bearer(login.json()["access_token"])
        created = client.post(
            "/api/v1/records", headers=headers, json={"title": "Compose smoke", "content": "Hello from **compose**."}
        )
        assert created.status_code == 201, created.text
        record_id = created.json()["id"]
        summary = client.post(f"/api/v1/records/{record_id}/ai/summarize", headers=headers)
        assert summary.status_code == 200, summary.text
        assert client.get(f"/api/v1/records/{record_id}", headers=headers).json()["summary"]
        published = client.post(f"/api/v1/records/{record_id}/publish", headers=headers)
        assert published.status_code == 200, published.text
        slug = published.json()["slug"]
        assert client.get(f"/api/v1/public/records/{slug}").json()["title"] == "Compose smoke"
    page = httpx.get(f"{web}/p/{slug}", timeout=20)
    assert page.status_code == 200
    assert "Compose smoke" in page.text and "<strong>compose</strong>" in page.text


@pytest.mark.e2e
def test_images_uploaded_through_the_compose_suite_land_in_the_bucket(
    compose_run: ComposeRun, s3_server: S3Server
) -> None:
    mobile = compose_run.urls["mobile_service"]
    env = compose_run.containers["image_service"].env
    name = f"i_{uuid.uuid4().hex[:10]}"
    picture = io.BytesIO()
    Image.new("RGB", (120, 80), (200, 100, 10)).save(picture, format="PNG")
    with httpx.Client(base_url=mobile, timeout=20) as client:
        assert client.post("/api/v1/auth/register", json={"username": name, "password": "compose pass 123"}).is_success
        login = client.post("/api/v1/auth/login", json={"username": name, "password": "compose pass 123"})
        headers = bearer(login.json()["access_token"])
        created = client.post("/api/v1/images", headers=headers, files={"file": ("c.png", picture.getvalue())})
        assert created.status_code == 201, created.text
        image = created.json()
        keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=env["S3_BUCKET"]).get("Contents", [])}
        assert f"originals/{image['id'][:2]}/{image['id']}.png" in keys
        assert client.get(image["url"], headers=headers).status_code == 200
