"""mobile_service settings on top of the shared ones (docs/api.md §2, §6)."""

from __future__ import annotations

from pydantic import Field

from common.config import MODEL_CALL_BUDGET_SECONDS, ForwardingSettings


class MobileSettings(ForwardingSettings):
    """Limits of the records API and of the forwarding proxy, each with a default."""

    # Records (the field limits are docs/api.md §6's contract and live in ``schemas``)
    sync_page_default: int = 100
    sync_page_max: int = 500
    sync_push_max_items: int = 100
    publish_slug_bytes: int = 16
    # Record history (docs/api.md §16): revisions kept per record (the newest N, and all younger
    # than the days), how long a deleted record stays in the trash (then it is purged, from sync
    # too), how often the purge runs in each process and how many rows one of its transactions takes.
    record_revisions_keep: int = Field(default=100, ge=1)
    record_revisions_days: float = Field(default=30.0, ge=0)
    record_trash_days: float = Field(default=30.0, ge=0)
    record_purge_interval_seconds: float = Field(default=3600.0, gt=0)
    record_purge_batch: int = Field(default=500, ge=1, le=10_000)
    # AI actions: how long to wait for llm_service's text tasks (common.config explains the budget).
    ai_timeout_seconds: float = MODEL_CALL_BUDGET_SECONDS

    # Forwarding proxy (common.forwarding; its timeouts come with ForwardingSettings).
    forward_max_connections: int = 200
    forward_max_body_bytes: int = 64 * 1024 * 1024
