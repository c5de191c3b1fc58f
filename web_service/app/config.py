from common.config import Settings


class WebSettings(Settings):
    """web_service keys on top of the shared ones."""

    web_workers: int = 1
    # Each streaming chat holds one gthread thread for its whole life: size for concurrent chats.
    web_threads: int = 64
