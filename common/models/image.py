"""Images and image-generation tasks (owned by image_service, docs/api.md §8).

Owner columns are user id strings without a foreign key: tokens are the source of identity.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.database import Base, TimestampMixin, UTCDateTime

IMAGE_ORIGIN_UPLOAD = "upload"
IMAGE_ORIGIN_GENERATED = "generated"

TASK_PENDING = "pending"
TASK_RUNNING = "running"
TASK_SUCCEEDED = "succeeded"
TASK_PARTIAL = "partial"
TASK_FAILED = "failed"
TASK_CANCELLED = "cancelled"
TASK_UNFINISHED = (TASK_PENDING, TASK_RUNNING)

RESULT_PENDING = "pending"
RESULT_RUNNING = "running"
RESULT_SUCCEEDED = "succeeded"
RESULT_FAILED = "failed"
RESULT_CANCELLED = "cancelled"


class Image(TimestampMixin, Base):
    """One stored image (uploaded or generated); the bytes live in the storage backend."""

    __tablename__ = "images"

    owner_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    record_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    origin: Mapped[str] = mapped_column(String(16), nullable=False, default=IMAGE_ORIGIN_UPLOAD)
    mime: Mapped[str] = mapped_column(String(32), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    # Hash of the stored (cleaned) bytes: the ETag.
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    # Hash of the bytes as uploaded: a repeated upload by the same owner finds its image.
    source_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    storage_key: Mapped[str] = mapped_column(String(255), nullable=False)
    generation_task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)

    __table_args__ = (
        UniqueConstraint("owner_id", "source_sha256", name="uq_images_owner_source"),
        Index("ix_images_owner_created", "owner_id", "created_at"),
    )


class GenerationTask(TimestampMixin, Base):
    """A request for ``n`` generated images, worked by any replica holding its lease."""

    __tablename__ = "generation_tasks"

    owner_id: Mapped[str] = mapped_column(String(64), nullable=False)
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    n: Mapped[int] = mapped_column(Integer, nullable=False)
    size: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=TASK_PENDING)
    progress: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The claim: which worker works the task and until when (renewed by its heartbeat).
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index("ix_generation_tasks_owner_created", "owner_id", "created_at"),
        Index("ix_generation_tasks_status", "status"),
    )


class GenerationResult(Base):
    """One of a task's ``n`` results: each is its own provider call and fails alone."""

    __tablename__ = "generation_results"

    task_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("generation_tasks.id", ondelete="CASCADE"), nullable=False, index=True
    )
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=RESULT_PENDING)
    image_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (UniqueConstraint("task_id", "index", name="uq_generation_results_task_index"),)
