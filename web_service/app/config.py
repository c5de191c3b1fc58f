import urllib.parse

from pydantic import field_validator

from common.config import ForwardingSettings


class WebSettings(ForwardingSettings):
    """web_service keys on top of the shared ones."""

    # gunicorn worker processes (gevent: each connection is a greenlet; app/server.py).
    web_workers: int = 1
    # Connections one worker holds at once (open chat streams included); more wait in the backlog.
    # bench/bench_web_sse.py and bench/bench_slowloris.py measure what one process carries.
    web_connections: int = 2000
    # A request's line and headers must arrive within this many seconds, which is also how long an
    # idle keep-alive connection is kept; then the connection is closed (slowloris).
    web_header_timeout_seconds: int = 10
    # Longest stall while reading a request body or writing an answer before the connection closes.
    web_read_timeout_seconds: float = 30.0

    # Browser sessions (server-side, in Redis, keyed by an opaque cookie).
    session_cookie_name: str = "sra_session"
    session_ttl_seconds: int = 14 * 86400
    anonymous_session_ttl_seconds: int = 2 * 3600
    # Refresh the access token this long before it expires.
    token_refresh_margin_seconds: int = 30
    refresh_lock_seconds: int = 10

    # Same-origin API: bodies up to this size are forwarded (image uploads; image_service has its own limit).
    api_max_body_bytes: int = 12 * 1024 * 1024

    # Static files: fingerprinted URLs are cached this long.
    static_max_age_seconds: int = 365 * 86400

    default_language: str = "en"

    # The site's public address (scheme and host, e.g. https://notes.example.org) for absolute
    # links in public pages (canonical, og:url, og:image); set it in production.
    public_base_url: str = ""
    # Unset PUBLIC_BASE_URL: the hosts (host[:port], comma-separated) the site answers on. A request
    # whose Host header is one of them gets links to that address; any other Host gets the first
    # one, so a forged Host never reaches shared metadata. Empty: 127.0.0.1 and localhost on PORT.
    public_hosts: str = ""

    # Reverse proxies in front of gunicorn that set X-Forwarded-For / X-Forwarded-Proto (each one
    # appends). 0 trusts none: the client address is the TCP peer and those headers are ignored.
    trusted_proxy_count: int = 0

    @property
    def public_host_list(self) -> list[str]:
        listed = [h.strip().lower() for h in self.public_hosts.split(",") if h.strip()]
        return listed or [f"127.0.0.1:{self.port}", f"localhost:{self.port}"]

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

    @field_validator("web_workers", "web_connections", "web_header_timeout_seconds", "web_read_timeout_seconds")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @field_validator("trusted_proxy_count")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("TRUSTED_PROXY_COUNT must be 0 (no proxy) or the number of proxies in front")
        return value
