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

    # Static files: fingerprinted URLs are cached this long.
    static_max_age_seconds: int = 365 * 86400

    default_language: str = "en"
