"""Record history (docs/api.md §16, owned and written by mobile_service): the states a record
had before each change of its title, content or tags, and edits that arrived on a stale version.

- ``RecordRevision``: one row per kept state, numbered per record (``revision`` 1, 2, ...).
  ``kind`` is ``version`` (the record was in this state from ``from_version`` to ``version``)
  or ``stale_edit`` (an edit sent against ``version``, older than the record's, kept as sent
  whether it was merged or refused). ``content`` holds the text whole (``content_format``
  ``full``) or, for a ``version`` state, as a reverse delta (``delta``): how to make this text
  from the state that came next (the next ``version`` revision, or the record itself). Every
  ``FULL_EVERY``-th state in a run is kept whole, so reading any revision applies few deltas.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.database import Base, UTCDateTime, utcnow

KIND_VERSION = "version"
KIND_STALE_EDIT = "stale_edit"
FORMAT_FULL = "full"
FORMAT_DELTA = "delta"


class RecordRevision(Base):
    __tablename__ = "record_revisions"

    record_id: Mapped[str] = mapped_column(String(36), ForeignKey("records.id", ondelete="CASCADE"), nullable=False)
    owner_id: Mapped[str] = mapped_column(String(36), nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default=KIND_VERSION)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    from_version: Mapped[int] = mapped_column(Integer, nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    content_format: Mapped[str] = mapped_column(String(8), nullable=False, default=FORMAT_FULL)
    content: Mapped[str] = mapped_column(Text, nullable=False, default="")
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (Index("ix_record_revisions_record_revision", "record_id", "revision", unique=True),)
