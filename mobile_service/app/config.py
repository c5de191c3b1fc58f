"""mobile_service settings on top of the shared ones (docs/api.md §2, §6)."""

from __future__ import annotations

from common.config import MODEL_CALL_BUDGET_SECONDS, ForwardingSettings


class MobileSettings(ForwardingSettings):
    """Limits of the records API and of the forwarding proxy, each with a default."""

    # Records (the field limits are docs/api.md §6's contract and live in ``schemas``)
    sync_page_default: int = 100
    sync_page_max: int = 500
    sync_push_max_items: int = 100
    publish_slug_bytes: int = 16
    # AI actions: how long to wait for llm_service's text tasks (common.config explains the budget).
    ai_timeout_seconds: float = MODEL_CALL_BUDGET_SECONDS

    # Forwarding proxy (common.forwarding; its timeouts come with ForwardingSettings).
    forward_max_connections: int = 200
    forward_max_body_bytes: int = 64 * 1024 * 1024
