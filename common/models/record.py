"""Records (owned and written by mobile_service; other services may read them, SPEC §6).

- ``Record``: the record itself. Deleting sets ``deleted_at`` (a tombstone for sync); rows are
  never removed by the API. ``change_seq`` is the record's place in its owner's change feed.
- ``RecordTag``: one row per (record, tag), so that ``?tag=`` is an index lookup on both databases.
- ``RecordChangeCounter``: one counter row per owner. Every write takes the next value inside its
  own transaction (``UPDATE ... RETURNING``); the row lock (PostgreSQL) or the database write lock
  (SQLite) is held until commit, so changes commit in sequence order and a sync reader that pages
  by sequence never skips one.
- Full-text search: on SQLite an FTS5 table ``records_fts`` (trigram tokenizer, so Chinese
  substrings match) kept in step by triggers, plus ``records_cjk`` for one- and two-character
  CJK words; on PostgreSQL a GIN index over a ``simple`` tsvector of title and content.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from common.database import Base, TimestampMixin, UTCDateTime

VISIBILITY_PRIVATE = "private"
VISIBILITY_PUBLIC = "public"


class Record(TimestampMixin, Base):
    __tablename__ = "records"

    owner_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    content: Mapped[str] = mapped_column(Text, nullable=False, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    pinned: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    visibility: Mapped[str] = mapped_column(String(16), nullable=False, default=VISIBILITY_PRIVATE)
    slug: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    attachments: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    change_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)

    __table_args__ = (
        # The owner's change feed, in order (sync), and its default listing order.
        Index("ix_records_owner_change_seq", "owner_id", "change_seq", unique=True),
        Index("ix_records_owner_updated", "owner_id", "deleted_at", "updated_at"),
        Index("ix_records_owner_pinned_updated", "owner_id", "pinned", "updated_at"),
    )


class RecordTag(Base):
    """A record's normalised tag, for indexed ``?tag=`` filtering. Rewritten with the record."""

    __tablename__ = "record_tags"

    record_id: Mapped[str] = mapped_column(String(36), ForeignKey("records.id", ondelete="CASCADE"), nullable=False)
    owner_id: Mapped[str] = mapped_column(String(36), nullable=False)
    tag: Mapped[str] = mapped_column(String(32), nullable=False)

    __table_args__ = (
        Index("ix_record_tags_owner_tag", "owner_id", "tag", "record_id", unique=True),
        Index("ix_record_tags_record", "record_id"),
    )


class RecordChangeCounter(Base):
    """The last change sequence number handed out for one owner (``id`` is the owner id)."""

    __tablename__ = "record_change_counters"

    value: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


# ---------------------------------------------------------------- full-text search DDL

SQLITE_FTS_TABLE = "records_fts"

_SQLITE_FTS_DDL: tuple[str, ...] = (
    # External content: the text lives once, in ``records``; the index maps record rowids. Every
    # row is indexed (a tombstone's text is blanked); searches join ``records`` for owner and state.
    "CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5("
    "title, content, content='records', content_rowid='rowid', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS records_fts_insert AFTER INSERT ON records BEGIN "
    "INSERT INTO records_fts(rowid, title, content) VALUES (new.rowid, new.title, new.content); END",
    "CREATE TRIGGER IF NOT EXISTS records_fts_delete AFTER DELETE ON records BEGIN "
    "INSERT INTO records_fts(records_fts, rowid, title, content) "
    "VALUES ('delete', old.rowid, old.title, old.content); END",
    "CREATE TRIGGER IF NOT EXISTS records_fts_update AFTER UPDATE OF title, content ON records BEGIN "
    "INSERT INTO records_fts(records_fts, rowid, title, content) "
    "VALUES ('delete', old.rowid, old.title, old.content); "
    "INSERT INTO records_fts(rowid, title, content) VALUES (new.rowid, new.title, new.content); END",
)

# Words of one or two characters in scripts written without spaces (a two-character Chinese word
# such as 会议) are below the trigram length. A second FTS5 table indexes those characters one
# token each (``cjk_index_text``), so such a word is a phrase query of adjacent tokens. Python
# fills it in the write path (mobile_service is the only writer of records).
SQLITE_CJK_TABLE = "records_cjk"
_SQLITE_CJK_DDL = "CREATE VIRTUAL TABLE IF NOT EXISTS records_cjk USING fts5(body, tokenize='unicode61')"
CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_RUN_BREAK = "x"  # a token between runs, so characters of two runs are never adjacent


def cjk_index_text(*texts: str) -> str:
    """The ``records_cjk`` body of a record: its CJK characters one token each, runs kept apart."""
    runs = [" ".join(run) for text in texts for run in _CJK_RUN.findall(text or "")]
    return f" {_RUN_BREAK} ".join(runs)


def cjk_phrase(term: str) -> str | None:
    """An FTS5 phrase for a short CJK term (``会议`` → ``"会 议"``), or None when it is not one."""
    if not term or not all(CJK_CHAR.match(ch) for ch in term):
        return None
    return '"' + " ".join(term) + '"'


PG_SEARCH_VECTOR = "to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(content, ''))"
_PG_FTS_DDL: tuple[str, ...] = (
    f"CREATE INDEX IF NOT EXISTS ix_records_search ON records USING gin (({PG_SEARCH_VECTOR}))",
)


def _create_search_index(target: Any, connection: Any, **_kw: Any) -> None:
    statements = (
        _SQLITE_FTS_DDL
        if connection.dialect.name == "sqlite"
        else _PG_FTS_DDL
        if connection.dialect.name == "postgresql"
        else ()
    )
    for statement in statements:
        connection.execute(text(statement))
    if connection.dialect.name == "sqlite":
        connection.execute(text(_SQLITE_CJK_DDL))


def _drop_search_index(target: Any, connection: Any, **_kw: Any) -> None:
    if connection.dialect.name == "sqlite":
        connection.execute(text(f"DROP TABLE IF EXISTS {SQLITE_FTS_TABLE}"))
        connection.execute(text(f"DROP TABLE IF EXISTS {SQLITE_CJK_TABLE}"))


event.listen(Record.__table__, "after_create", _create_search_index)
event.listen(Record.__table__, "before_drop", _drop_search_index)


def rebuild_sqlite_search_index_sql() -> str:
    """SQL that rebuilds the FTS5 index from ``records`` (run after a VACUUM, which may renumber rowids)."""
    return "INSERT INTO records_fts(records_fts) VALUES ('rebuild')"
