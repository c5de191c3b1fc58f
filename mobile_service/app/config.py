"""mobile_service settings on top of the shared ones (docs/api.md §2, §6)."""

from __future__ import annotations

from common.config import Settings


class MobileSettings(Settings):
    """Limits of the records API and of the forwarding proxy, each with a default."""

    # Records (the field limits are docs/api.md §6's contract and live in ``schemas``)
    sync_page_default: int = 100
    sync_page_max: int = 500
    sync_push_max_items: int = 100
    publish_slug_bytes: int = 16
    # AI actions: how long to wait for llm_service's text tasks. llm_service may legitimately
    # take LLM_TIMEOUT_SECONDS (60) × (1 + LLM_MAX_RETRIES 2) = 180 s plus the SDK's back-off
    # between attempts, so both this and the forwarding timeout of model calls are 200 s.
    ai_timeout_seconds: float = 200.0

    # Forwarding proxy (common.forwarding). Read timeouts are the longest silence allowed from
    # the upstream (before its first byte, and between two chunks of a stream).
    forward_timeout_seconds: float = 30.0
    # Model calls: /api/v1/chat/*, /api/v1/text/*, /api/v1/models, /api/v1/generations/*
    forward_llm_timeout_seconds: float = 200.0
    forward_connect_timeout_seconds: float = 2.0
    forward_max_connections: int = 200
    forward_max_body_bytes: int = 64 * 1024 * 1024
