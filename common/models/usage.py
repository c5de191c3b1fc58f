"""LLM token usage, one row per provider call (written by llm_service, docs/api.md §7)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from common.database import Base, UTCDateTime, utcnow


class LLMUsage(Base):
    """Model and token counts of one call made for a user. ``day`` (UTC, ``YYYY-MM-DD``) is stored so
    that the per-day totals group the same way on SQLite and PostgreSQL."""

    __tablename__ = "llm_usage"

    owner_id: Mapped[str] = mapped_column(String(36), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    # What the call served: "chat", "text:summarize", "openai" (the compatible endpoint), ...
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # True when the provider gave no counts (e.g. a stream cut short) and they were estimated.
    estimated: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    day: Mapped[str] = mapped_column(String(10), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (Index("ix_llm_usage_owner_day", "owner_id", "day"),)
