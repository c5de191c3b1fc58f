"""mobile_service settings on top of the shared ones (SPEC §2, §6)."""

from __future__ import annotations

from common.config import Settings


class MobileSettings(Settings):
    """Limits of the records API and of the forwarding proxy, each with a default."""

    # Records (the field limits are SPEC §6's contract and live in ``schemas``)
    sync_page_default: int = 100
    sync_page_max: int = 500
    sync_push_max_items: int = 100
    publish_slug_bytes: int = 16
    # AI actions: how long to wait for llm_service's text tasks
    ai_timeout_seconds: float = 60.0

    # Forwarding proxy (common.forwarding)
    forward_timeout_seconds: float = 30.0
    forward_connect_timeout_seconds: float = 2.0
    forward_max_connections: int = 200
    forward_max_body_bytes: int = 64 * 1024 * 1024
