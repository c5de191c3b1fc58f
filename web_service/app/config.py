import urllib.parse

from pydantic import field_validator

from common.config import Settings


class WebSettings(Settings):
    """web_service keys on top of the shared ones."""

    web_workers: int = 1
    # Each streaming chat holds one gthread thread for its whole life: size for concurrent chats
    # (bench/bench_web_sse.py measures what one process carries).
    web_threads: int = 64

    # Browser sessions (server-side, in Redis, keyed by an opaque cookie).
    session_cookie_name: str = "sra_session"
    session_ttl_seconds: int = 14 * 86400
    anonymous_session_ttl_seconds: int = 2 * 3600
    # Refresh the access token this long before it expires.
    token_refresh_margin_seconds: int = 30
    refresh_lock_seconds: int = 10

    # Same-origin API: bodies up to this size are forwarded (image uploads; image_service has its own limit).
    api_max_body_bytes: int = 12 * 1024 * 1024
    # Longest silence allowed from llm_service on model calls (chat, text, models, generations):
    # its provider timeout × retries; other routes use UPSTREAM_TIMEOUT_SECONDS. Same as mobile_service.
    forward_llm_timeout_seconds: float = 200.0

    # Static files: fingerprinted URLs are cached this long.
    static_max_age_seconds: int = 365 * 86400

    default_language: str = "en"

    # The site's public address (scheme and host, e.g. https://notes.example.org) for absolute
    # links in public pages (canonical, og:url, og:image). Unset: the address the request came to,
    # which trusts the Host header; set it in production.
    public_base_url: str = ""

    # Reverse proxies in front of gunicorn that set X-Forwarded-For / X-Forwarded-Proto (each one
    # appends). 0 trusts none: the client address is the TCP peer and those headers are ignored.
    trusted_proxy_count: int = 0

    @field_validator("public_base_url")
    @classmethod
    def _plain_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return ""
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("PUBLIC_BASE_URL must be an http(s) address such as https://notes.example.org")
        return value

    @field_validator("trusted_proxy_count")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("TRUSTED_PROXY_COUNT must be 0 (no proxy) or the number of proxies in front")
        return value
