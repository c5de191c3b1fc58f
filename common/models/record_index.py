"""The semantic index of records (docs/api.md §15): what each record's embeddings are, and which
records still wait for them. mobile_service marks a record pending in the same transaction as
the write that changed its text, and removes its chunks when it is deleted; llm_service's indexer
claims pending rows with a lease (``common.leases``) and writes the chunks.

- ``RecordIndexState``: one row per record (``id`` is the record id): the version the record is
  at (``wanted_version``), the version and model its chunks were made from, the status
  (``pending``/``indexed``/``failed``), the retry schedule and the worker's lease.
- ``RecordChunk``: one embedded piece of a record's text; the vector as float32 bytes.
- ``RecordIndexOwner``: a counter per owner, bumped by every change of the owner's chunks, so a
  process's cache of the owner's vectors knows when it is stale, whichever replica wrote.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.database import Base, UTCDateTime, utcnow

INDEX_PENDING = "pending"
INDEX_INDEXED = "indexed"
INDEX_FAILED = "failed"


class RecordIndexState(Base):
    __tablename__ = "record_index"

    owner_id: Mapped[str] = mapped_column(String(36), nullable=False)
    wanted_version: Mapped[int] = mapped_column(Integer, nullable=False)
    indexed_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=INDEX_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_record_index_due", "status", "next_attempt_at"),
        Index("ix_record_index_owner_status", "owner_id", "status"),
    )


class RecordChunk(Base):
    __tablename__ = "record_chunks"

    record_id: Mapped[str] = mapped_column(String(36), nullable=False)
    owner_id: Mapped[str] = mapped_column(String(36), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    # The owner's chunk generation that wrote it: a process's cache loads only what is newer.
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    ordinal: Mapped[int] = mapped_column(Integer, nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    dimensions: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    embedding: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    __table_args__ = (
        Index("ix_record_chunks_owner_model", "owner_id", "model", "generation"),
        Index("ix_record_chunks_record", "record_id"),
    )


class RecordIndexOwner(Base):
    """``id`` is the owner id; ``generation`` grows with every change of the owner's chunks."""

    __tablename__ = "record_index_owners"

    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
