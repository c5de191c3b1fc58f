"""Settings: one loader for every service (docs/api.md §2).

Precedence, highest first: the process environment, ``<service>/.env``, the root ``.env``,
built-in defaults. pydantic-settings reads the dotenv files through python-dotenv; the later
file in ``env_file`` wins, and the process environment beats both.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
ROOT_ENV = REPO_ROOT / ".env"
ROOT_ENV_EXAMPLE = REPO_ROOT / ".env.example"

# The suite's services and their default ports (docs/api.md §1).
# How long one model call through llm_service may take: its provider timeout (LLM_TIMEOUT_SECONDS,
# 60 s) × (1 + LLM_MAX_RETRIES, 2) = 180 s, plus the SDK's back-off between attempts. The default
# of every wait for a model call (forwarding, mobile_service's AI actions).
MODEL_CALL_BUDGET_SECONDS = 200.0

SERVICE_PORTS: dict[str, int] = {
    "web_service": 8000,
    "user_service": 8001,
    "mobile_service": 8002,
    "llm_service": 8003,
    "image_service": 8004,
}

INSECURE_SECRETS = {"", "change-me", "changeme", "secret", "dev-secret"}
MIN_SECRET_BYTES = 32


def check_trusted_proxies(value: str) -> str:
    """``TRUSTED_PROXIES``: "*" or a comma list of IP addresses / CIDR networks; raises naming the key."""
    entries = [item.strip() for item in value.split(",") if item.strip()]
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR network "
                "(use a comma list such as '127.0.0.1,172.16.0.0/12', or '*')"
            ) from None
    if not entries:
        raise ValueError("TRUSTED_PROXIES is empty; leave it unset for 127.0.0.1, or name the proxies")
    return ",".join(entries)


class Settings(BaseSettings):
    """Keys shared by every service. Services subclass it to add their own keys."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, env_ignore_empty=True)

    service_name: str = "common"
    env: Literal["development", "production"] = "development"
    secret_key: str = "change-me"
    database_url: str = f"sqlite+aiosqlite:///{REPO_ROOT / 'data' / 'app.db'}"
    # PostgreSQL: connections per process for the hot reads (``common.database.QuickReader``),
    # besides the engine's pool; opened as concurrency needs them, closed after 5 idle minutes.
    database_quick_pool_size: int = Field(default=16, ge=1, le=100)
    redis_url: str = "redis://127.0.0.1:6379/0"
    cors_origins: str = ""
    log_level: str = "INFO"
    log_format: Literal["console", "json"] | None = None
    log_dir: str = str(REPO_ROOT / "logs")

    # ``<SERVICE>_PORT`` (env or dotenv files) moves a service: its own ``port`` and the URL the
    # others use for it (when ``<SERVICE>_URL`` is not set). Filled in by the validator.
    user_service_port: int | None = Field(default=None, ge=1, le=65535)
    mobile_service_port: int | None = Field(default=None, ge=1, le=65535)
    llm_service_port: int | None = Field(default=None, ge=1, le=65535)
    image_service_port: int | None = Field(default=None, ge=1, le=65535)
    web_service_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator(*(f"{name}_port" for name in SERVICE_PORTS), mode="before")
    @classmethod
    def _ignore_link_style_ports(cls, value: object) -> object:
        # Kubernetes and Docker links inject e.g. USER_SERVICE_PORT=tcp://10.0.0.7:8001 for a
        # service named "user-service": not ours, ignored (as before); other non-numbers are refused.
        return None if isinstance(value, str) and "://" in value else value

    user_service_url: str = ""
    mobile_service_url: str = ""
    llm_service_url: str = ""
    image_service_url: str = ""
    web_service_url: str = ""

    host: str = "127.0.0.1"
    port: int = 0
    # Peers whose X-Forwarded-For / X-Forwarded-Proto uvicorn believes (uvicorn's
    # ``forwarded_allow_ips``): a comma list of IPs or CIDR networks, or "*". Behind
    # mobile_service/web_service on other hosts (docker-compose), name their addresses or network.
    # uvicorn's own FORWARDED_ALLOW_IPS variable is read as a fallback name.
    trusted_proxies: str = Field(
        default="127.0.0.1", validation_alias=AliasChoices("trusted_proxies", "forwarded_allow_ips")
    )

    # Auth (docs/api.md §5)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_minutes: int = 15
    refresh_token_days: int = 14
    login_max_failures: int = 5
    login_failure_window_seconds: int = 900

    # HTTP
    max_body_bytes: int = 1_048_576
    upstream_timeout_seconds: float = 30.0
    upstream_connect_timeout_seconds: float = 2.0
    shutdown_grace_seconds: int = 10

    # Process: the garbage collector's first threshold in a served process (0 keeps Python's 700;
    # see ``common.app_factory.tune_garbage_collector``).
    gc_gen0_threshold: int = Field(default=20_000, ge=0)
    # glibc: blocks from this size up are given back to the system when freed (0 keeps glibc's
    # rising threshold; see ``common.app_factory.tune_malloc``).
    malloc_mmap_threshold_bytes: int = Field(default=1_048_576, ge=0, le=33_554_432)

    version: str = Field(default="0.1.0")

    @model_validator(mode="after")
    def _fill_defaults_and_guard(self) -> Settings:
        own_port = getattr(self, f"{self.service_name}_port", None) if self.service_name in SERVICE_PORTS else None
        if own_port:
            self.port = own_port  # <SERVICE>_PORT beats a shared PORT
        if not self.port:
            self.port = SERVICE_PORTS.get(self.service_name, 8080)
        for name, default_port in SERVICE_PORTS.items():
            if not getattr(self, f"{name}_url"):
                setattr(self, f"{name}_url", f"http://127.0.0.1:{getattr(self, f'{name}_port') or default_port}")
        self.trusted_proxies = check_trusted_proxies(self.trusted_proxies)
        self.database_url = absolute_sqlite_url(self.database_url)
        if self.log_format is None:
            self.log_format = "json" if self.env == "production" else "console"
        if self.env == "production":
            secret = self.secret_key or ""
            if secret.strip().lower() in INSECURE_SECRETS or len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    "SECRET_KEY is missing, a default, or shorter than 32 bytes; "
                    "set SECRET_KEY (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`) "
                    "before starting with ENV=production"
                )
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


S = TypeVar("S", bound=Settings)


def absolute_sqlite_url(url: str) -> str:
    """Resolve a relative SQLite path against the repository, so every service finds one file."""
    prefix, sep, path = url.partition(":///")
    if not sep or not prefix.startswith("sqlite") or not path or path.startswith("/") or path == ":memory:":
        return url
    return f"{prefix}:///{REPO_ROOT / path}"


def env_files(service: str | None, root: Path = REPO_ROOT) -> tuple[Path, ...]:
    """Dotenv files for a service, lowest precedence first (``root`` is injectable for tests)."""
    files = [root / ".env"]
    if service:
        files.append(root / service / ".env")
    return tuple(files)


class ForwardingSettings(Settings):
    """The forwarding proxy's keys, the same in both services that forward ``/api/v1``
    (mobile_service, web_service). Read timeouts are the longest silence allowed from the
    upstream: before its first byte, and between two chunks of a stream."""

    forward_timeout_seconds: float = 30.0
    # Model calls: /api/v1/chat/*, /api/v1/text/*, /api/v1/models, /api/v1/generations/*
    forward_llm_timeout_seconds: float = MODEL_CALL_BUDGET_SECONDS
    forward_connect_timeout_seconds: float = 2.0


def load_settings(
    cls: type[S] = Settings,  # type: ignore[assignment]
    service: str | None = None,
    *,
    root_dir: Path | None = None,
    **overrides: object,
) -> S:
    """Build typed settings for ``service`` from env, its ``.env``, the root ``.env`` and defaults.

    ``overrides`` beat every source (tests, CLIs); ``root_dir`` replaces the repository root as the
    place of the ``.env`` files (tests)."""
    init: dict[str, object] = {"service_name": service or "common", **overrides}
    if "port" in overrides and service in SERVICE_PORTS:
        init.setdefault(f"{service}_port", overrides["port"])  # an explicit port beats <SERVICE>_PORT
    return cls(_env_file=env_files(service, root_dir or REPO_ROOT), **init)  # type: ignore[call-arg]


def ensure_root_env(env_path: Path = ROOT_ENV, example_path: Path = ROOT_ENV_EXAMPLE) -> bool:
    """Write the root ``.env`` from ``.env.example`` with a fresh SECRET_KEY on first run.

    Returns True when the file was created. Tokens then stay valid across services and restarts.
    """
    if env_path.exists():
        return False
    template = example_path.read_text() if example_path.exists() else "SECRET_KEY=\n"
    secret = secrets.token_urlsafe(48)
    lines = []
    replaced = False
    for line in template.splitlines():
        if line.startswith("SECRET_KEY="):
            line = f"SECRET_KEY={secret}"
            replaced = True
        lines.append(line)
    if not replaced:
        lines.append(f"SECRET_KEY={secret}")
    env_path.write_text("\n".join(lines) + "\n")
    env_path.chmod(0o600)
    return True
