"""Settings (docs/api.md §2): precedence, the first .env, the production guard. Every file is a temporary
one: ``root_dir`` points the loader at a scratch repository root."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from common.config import SERVICE_PORTS, Settings, ensure_root_env, load_settings

SERVICE = "user_service"
SERVICE_PORT_KEYS = tuple(f"{name.upper()}_PORT" for name in SERVICE_PORTS)
SERVICE_URL_KEYS = tuple(f"{name.upper()}_URL" for name in SERVICE_PORTS)
KEYS = (
    "LOG_LEVEL",
    "CORS_ORIGINS",
    "ENV",
    "SECRET_KEY",
    "ACCESS_TOKEN_MINUTES",
    "PORT",
    "TRUSTED_PROXIES",
    "FORWARDED_ALLOW_IPS",
    *SERVICE_PORT_KEYS,
    *SERVICE_URL_KEYS,
)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch repository root with an empty ``user_service/`` and none of our keys in the env."""
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    (tmp_path / SERVICE).mkdir()
    return tmp_path


def _write(path: Path, **values: str) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def _load(root: Path, **overrides: object) -> Settings:
    return load_settings(Settings, SERVICE, root_dir=root, **overrides)


def test_defaults_apply_without_any_env_file(root: Path) -> None:
    settings = _load(root)
    assert settings.log_level == "INFO" and settings.env == "development"
    assert settings.port == 8001 and settings.user_service_url == "http://127.0.0.1:8001"
    assert settings.access_token_minutes == 15 and settings.refresh_token_days == 14


def test_root_env_beats_defaults(root: Path) -> None:
    _write(root / ".env", LOG_LEVEL="WARNING", ACCESS_TOKEN_MINUTES="5")
    settings = _load(root)
    assert settings.log_level == "WARNING" and settings.access_token_minutes == 5


def test_service_env_beats_root_env_key_by_key(root: Path) -> None:
    _write(root / ".env", LOG_LEVEL="WARNING", CORS_ORIGINS="http://root.example")
    _write(root / SERVICE / ".env", LOG_LEVEL="ERROR")
    settings = _load(root)
    assert settings.log_level == "ERROR"
    assert settings.cors_origin_list == ["http://root.example"]  # not set by the service file: root's shows


def test_process_env_beats_both_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(root / ".env", LOG_LEVEL="WARNING")
    _write(root / SERVICE / ".env", LOG_LEVEL="ERROR")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    assert _load(root).log_level == "DEBUG"


def test_an_empty_env_value_does_not_hide_a_file_value(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(root / ".env", LOG_LEVEL="WARNING")
    monkeypatch.setenv("LOG_LEVEL", "")
    assert _load(root).log_level == "WARNING"


def test_another_services_env_file_is_not_read(root: Path) -> None:
    (root / "llm_service").mkdir()
    _write(root / "llm_service" / ".env", LOG_LEVEL="ERROR")
    assert _load(root).log_level == "INFO"


def test_service_port_variable_moves_the_port_and_the_url_others_use(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER_SERVICE_PORT", "18001")
    monkeypatch.setenv("PORT", "9999")  # a shared PORT loses against <SERVICE>_PORT
    assert _load(root).port == 18001
    other = load_settings(Settings, "llm_service", root_dir=root)
    assert other.user_service_url == "http://127.0.0.1:18001"


def test_service_port_in_the_root_env_file_moves_the_port_and_the_url_others_use(root: Path) -> None:
    _write(root / ".env", USER_SERVICE_PORT="18001", LLM_SERVICE_PORT="18003")
    own = _load(root)
    assert own.port == 18001 and own.user_service_url == "http://127.0.0.1:18001"
    other = load_settings(Settings, "mobile_service", root_dir=root)
    assert other.port == 8002
    assert other.user_service_url == "http://127.0.0.1:18001"
    assert other.llm_service_url == "http://127.0.0.1:18003"


def test_service_port_in_the_service_env_file_moves_its_port(root: Path) -> None:
    _write(root / SERVICE / ".env", USER_SERVICE_PORT="18101")
    assert _load(root).port == 18101


def test_the_process_env_port_beats_the_env_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(root / ".env", USER_SERVICE_PORT="18001", PORT="9999")
    monkeypatch.setenv("USER_SERVICE_PORT", "18201")
    assert _load(root).port == 18201
    assert load_settings(Settings, "llm_service", root_dir=root).user_service_url == "http://127.0.0.1:18201"


def test_an_explicit_url_beats_the_port(root: Path) -> None:
    _write(root / ".env", USER_SERVICE_PORT="18001", USER_SERVICE_URL="http://user-service:8001")
    other = load_settings(Settings, "mobile_service", root_dir=root)
    assert other.user_service_url == "http://user-service:8001"
    assert _load(root).port == 18001


def test_an_explicit_port_override_beats_service_port(root: Path) -> None:
    _write(root / ".env", USER_SERVICE_PORT="18001")
    assert _load(root, port=18555).port == 18555


@pytest.mark.parametrize("bad", ["eighty", "0", "70000"])
def test_a_bad_service_port_is_refused_naming_the_key(root: Path, bad: str) -> None:
    _write(root / ".env", USER_SERVICE_PORT=bad)
    with pytest.raises(ValueError, match="user_service_port"):
        _load(root)


def test_a_link_style_service_port_variable_is_ignored(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What Kubernetes injects for a service named "user-service": not a port of ours.
    monkeypatch.setenv("USER_SERVICE_PORT", "tcp://10.0.0.7:8001")
    assert _load(root).port == 8001
    assert load_settings(Settings, "llm_service", root_dir=root).user_service_url == "http://127.0.0.1:8001"


def test_trusted_proxies_defaults_to_this_machine_and_reads_env_files(root: Path) -> None:
    assert _load(root).trusted_proxies == "127.0.0.1"
    _write(root / ".env", TRUSTED_PROXIES="172.16.0.0/12, 10.0.0.5")
    assert _load(root).trusted_proxies == "172.16.0.0/12,10.0.0.5"


def test_uvicorns_own_forwarded_allow_ips_variable_still_counts(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.1.2.3")
    assert _load(root).trusted_proxies == "10.1.2.3"
    monkeypatch.setenv("TRUSTED_PROXIES", "10.9.9.9")
    assert _load(root).trusted_proxies == "10.9.9.9"  # our name first
    assert _load(root, trusted_proxies="*").trusted_proxies == "*"


def test_relative_sqlite_paths_resolve_against_the_repository(root: Path) -> None:
    settings = _load(root, database_url="sqlite+aiosqlite:///data/x.db")
    assert settings.database_url.startswith("sqlite+aiosqlite:////") and settings.database_url.endswith("/data/x.db")


# ---------------------------------------------------------------- first run


def test_first_run_writes_the_root_env_with_a_fresh_secret(tmp_path: Path) -> None:
    example = tmp_path / ".env.example"
    example.write_text("# comment kept\nENV=development\nSECRET_KEY=\nLOG_LEVEL=INFO\n")
    env_path = tmp_path / ".env"
    assert ensure_root_env(env_path, example) is True

    text = env_path.read_text()
    assert "# comment kept" in text and "LOG_LEVEL=INFO" in text
    secret = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("SECRET_KEY="))
    assert len(secret.encode()) >= 32
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600

    # Second run: nothing changes, so tokens stay valid across restarts.
    assert ensure_root_env(env_path, example) is False
    assert env_path.read_text() == text


def test_each_fresh_install_gets_its_own_secret(tmp_path: Path) -> None:
    secrets = set()
    for n in range(2):
        env_path = tmp_path / f"{n}.env"
        ensure_root_env(env_path, tmp_path / "missing.example")
        (line,) = env_path.read_text().splitlines()
        secrets.add(line)
    assert len(secrets) == 2


def test_the_written_secret_passes_the_production_guard(root: Path) -> None:
    ensure_root_env(root / ".env", root / "missing.example")
    settings = _load(root, env="production")
    assert len(settings.secret_key) >= 32 and settings.log_format == "json"


# ---------------------------------------------------------------- production guard


@pytest.mark.parametrize(
    "secret",
    [None, "", "change-me", "CHANGE-ME", "secret", "x" * 31, "é" * 15],
    ids=["missing", "empty", "default", "default-upper", "word", "31-bytes", "15-two-byte-chars"],
)
def test_production_refuses_a_weak_secret_naming_the_key(root: Path, secret: str | None) -> None:
    overrides: dict[str, object] = {"env": "production"}
    if secret is not None:
        overrides["secret_key"] = secret
    with pytest.raises(ValueError, match="SECRET_KEY"):
        _load(root, **overrides)


def test_production_from_the_env_file_is_guarded_too(root: Path) -> None:
    _write(root / ".env", ENV="production", SECRET_KEY="change-me")
    with pytest.raises(ValueError, match="SECRET_KEY"):
        _load(root)


def test_production_accepts_a_long_random_secret(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 32)
    settings = _load(root)
    assert settings.env == "production" and settings.secret_key == "k" * 32


def test_development_runs_with_the_default_secret(root: Path) -> None:
    assert _load(root).secret_key == "change-me"
