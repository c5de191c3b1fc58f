"""Records (owned and written by mobile_service; other services may read them, docs/api.md §6).

- ``Record``: the record itself. Deleting sets ``deleted_at`` (a tombstone for sync); rows are
  never removed by the API. ``change_seq`` is the record's place in its owner's change feed.
- ``RecordTag``: one row per (record, tag), so that ``?tag=`` is an index lookup on both databases.
- ``RecordChangeCounter``: one counter row per owner. Every write takes the next value inside its
  own transaction (``UPDATE ... RETURNING``); the row lock (PostgreSQL) or the database write lock
  (SQLite) is held until commit, so changes commit in sequence order and a sync reader that pages
  by sequence never skips one.
- Full-text search: on SQLite an FTS5 table ``records_search`` (trigram tokenizer, so Chinese
  substrings match; document ids ranged by owner) kept in step by triggers, plus ``records_cjk``
  for one- and two-character CJK words; on PostgreSQL a GIN index over a ``simple`` tsvector of
  title and content.
- History (docs/api.md §16): ``text_version`` is the version at which the record's title, content
  and tags last changed (NULL for records older than history: then only the current version is a
  known merge base), ``device`` the device that made that change; the states before it are
  ``common.models.record_revision``. ``RecordChangeCounter.purged_seq`` is the highest change
  number of the owner's purged tombstones: a sync cursor below it has missed a delete for good.
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

from common.database import SQLITE_SCHEMA_UPGRADES, Base, TimestampMixin, UTCDateTime

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
    text_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        # The owner's change feed, in order (sync), and its default listing order: newest first,
        # ties broken by id, all in the index (without ``id``, records written at the same instant,
        # an import's, were sorted on every page: migration 0005).
        Index("ix_records_owner_change_seq", "owner_id", "change_seq", unique=True),
        Index("ix_records_owner_updated", "owner_id", "deleted_at", "updated_at", "id"),
        Index("ix_records_owner_pinned_updated", "owner_id", "pinned", "updated_at", "id"),
        # The purge's scan for old tombstones: only tombstones are in it.
        Index(
            "ix_records_tombstones",
            "deleted_at",
            sqlite_where=text("deleted_at IS NOT NULL"),
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
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
    purged_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default=text("0"))


# ---------------------------------------------------------------- full-text search DDL

# SQLite: ``records_search``, an FTS5 table with the trigram tokenizer (substring matching, so
# Chinese text matches too) over title and content of every live record. Its document ids are
# owner-ranged: ``owner number * 2**32 + records.rowid``, the owner numbers kept in
# ``records_search_owners``. A search gives FTS5 the owner's id range, so it counts and pages
# through only that owner's postings: a user with 100,000 records no longer pays for the others' matches
# nor joins every match back to ``records`` to learn whose it is. Triggers keep it in step with
# every write (tombstones leave the index); it holds its own copy of the text, so a row can be
# deleted by id. ``records.rowid`` must stay below 2**32 (four billion records).
SQLITE_SEARCH_TABLE = "records_search"
SQLITE_SEARCH_OWNERS = "records_search_owners"
# Document ids of one owner: [number * SPAN, (number + 1) * SPAN). The SQL below spells it out
# as 4294967296 (DDL is written literally, as the revisions freeze it).
SEARCH_DOCID_SPAN = 2**32

_NEW_DOC = (
    "INSERT OR IGNORE INTO records_search_owners(owner_id) VALUES (new.owner_id); "
    "INSERT INTO records_search(rowid, title, content) "
    "SELECT number * 4294967296 + new.rowid, new.title, new.content FROM records_search_owners "
    "WHERE owner_id = new.owner_id AND new.deleted_at IS NULL; "
)
_OLD_DOC = (
    "DELETE FROM records_search WHERE rowid = "
    "(SELECT number * 4294967296 + old.rowid FROM records_search_owners WHERE owner_id = old.owner_id); "
)
_SQLITE_SEARCH_DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS records_search_owners "
    "(number INTEGER PRIMARY KEY, owner_id VARCHAR(36) NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS records_search USING fts5(title, content, tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS records_search_insert AFTER INSERT ON records BEGIN "
    "SELECT RAISE(ABORT, 'records.rowid is past the search index range') WHERE new.rowid >= 4294967296; "
    + _NEW_DOC
    + "END",
    "CREATE TRIGGER IF NOT EXISTS records_search_update AFTER UPDATE OF owner_id, title, content, deleted_at "
    "ON records BEGIN " + _OLD_DOC + _NEW_DOC + "END",
    "CREATE TRIGGER IF NOT EXISTS records_search_delete AFTER DELETE ON records BEGIN " + _OLD_DOC + "END",
)
# The first search index (before owner-ranged ids): dropped when a database is upgraded.
_SQLITE_LEGACY_SEARCH = ("records_fts_insert", "records_fts_delete", "records_fts_update", "records_fts")


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
    if connection.dialect.name == "sqlite":
        for statement in (*_SQLITE_SEARCH_DDL, _SQLITE_CJK_DDL):
            connection.execute(text(statement))
    elif connection.dialect.name == "postgresql":
        for statement in _PG_FTS_DDL:
            connection.execute(text(statement))


def _drop_search_index(target: Any, connection: Any, **_kw: Any) -> None:
    if connection.dialect.name == "sqlite":
        for name in (SQLITE_SEARCH_TABLE, SQLITE_SEARCH_OWNERS, SQLITE_CJK_TABLE):
            connection.execute(text(f"DROP TABLE IF EXISTS {name}"))


event.listen(Record.__table__, "after_create", _create_search_index)
event.listen(Record.__table__, "before_drop", _drop_search_index)


def rebuild_sqlite_search_index_sql() -> tuple[str, ...]:
    """SQL that refills ``records_search`` from the live records (after a VACUUM, which may
    renumber rowids, or to drop rows of records changed outside the triggers)."""
    return (
        "DELETE FROM records_search",
        "INSERT OR IGNORE INTO records_search_owners(owner_id) SELECT DISTINCT owner_id FROM records",
        "INSERT INTO records_search(rowid, title, content) "
        "SELECT o.number * 4294967296 + r.rowid, r.title, r.content FROM records r "
        "JOIN records_search_owners o ON o.owner_id = r.owner_id WHERE r.deleted_at IS NULL",
        # One b-tree instead of the many segments a bulk delete and refill leave behind.
        "INSERT INTO records_search(records_search) VALUES ('optimize')",
    )


# What a database's search index consists of (all must exist for it to count as complete).
_SQLITE_SEARCH_OBJECTS = frozenset(
    {
        SQLITE_SEARCH_TABLE,
        SQLITE_SEARCH_OWNERS,
        "records_search_insert",
        "records_search_update",
        "records_search_delete",
        SQLITE_CJK_TABLE,
    }
)


def upgrade_sqlite_search_index(connection: Any) -> bool:
    """Bring a SQLite database's search index up to date: made before owner-ranged ids (the old
    ``records_fts`` is still there), missing any part of the index, or with live records but an
    empty index. Creates what is missing, refills the index from the records, then drops the
    old one; the refill and the drop commit together, so an upgrade cut short is done again at
    the next start. True when it changed something. Runs under the schema lock of
    ``Database.create_all`` and after adopting a database in ``common.migrations`` (revision 0002
    does the same)."""
    present = {row[0] for row in connection.execute(text("SELECT name FROM sqlite_master"))}
    if "records" not in present:
        return False
    complete = _SQLITE_SEARCH_OBJECTS.issubset(present) and not present.intersection(_SQLITE_LEGACY_SEARCH)
    if complete:
        has_live = connection.execute(text("SELECT 1 FROM records WHERE deleted_at IS NULL LIMIT 1")).first()
        indexed = connection.execute(text(f"SELECT 1 FROM {SQLITE_SEARCH_TABLE} LIMIT 1")).first()  # noqa: S608
        if indexed or not has_live:
            return False
    for statement in (*_SQLITE_SEARCH_DDL, _SQLITE_CJK_DDL):
        connection.execute(text(statement))
    for statement in rebuild_sqlite_search_index_sql():
        connection.execute(text(statement))
    for name in _SQLITE_LEGACY_SEARCH:
        kind = "TABLE" if name == "records_fts" else "TRIGGER"
        connection.execute(text(f"DROP {kind} IF EXISTS {name}"))
    return True


SQLITE_SCHEMA_UPGRADES.append(upgrade_sqlite_search_index)


# Record history's columns (migration 0004), for SQLite files that ``create_all`` made before
# them: it adds missing tables, never columns or indexes of tables that exist.
_SQLITE_HISTORY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("records", "text_version", "INTEGER"),
    ("records", "device", "VARCHAR(64)"),
    ("record_change_counters", "purged_seq", "BIGINT DEFAULT '0' NOT NULL"),
)
_SQLITE_TOMBSTONE_INDEX = (
    "CREATE INDEX IF NOT EXISTS ix_records_tombstones ON records (deleted_at) WHERE deleted_at IS NOT NULL"
)


def upgrade_sqlite_history_columns(connection: Any) -> bool:
    """Add record history's columns and index to a SQLite database made before them (a no-op on
    an up-to-date one). True when it changed something."""
    if connection.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'records'")).first() is None:
        return False
    changed = False
    for table, column, ddl in _SQLITE_HISTORY_COLUMNS:
        present = {row[1] for row in connection.execute(text(f"PRAGMA table_info({table})"))}
        if present and column not in present:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
            changed = True
    if connection.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'ix_records_tombstones'")).first() is None:
        connection.execute(text(_SQLITE_TOMBSTONE_INDEX))
        changed = True
    return changed


SQLITE_SCHEMA_UPGRADES.append(upgrade_sqlite_history_columns)


# Indexes whose columns migration 0005 changed (the records list's: ``id`` last).
_SQLITE_LISTING_INDEXES = ("ix_records_owner_updated", "ix_records_owner_pinned_updated")


def upgrade_sqlite_listing_indexes(connection: Any) -> bool:
    """Rebuild the records list's indexes as the model defines them on a SQLite database made
    before migration 0005 (a no-op on an up-to-date one). True when it changed something."""
    changed = False
    for index in Record.__table__.indexes:
        if index.name not in _SQLITE_LISTING_INDEXES:
            continue
        present = [row[2] for row in connection.execute(text(f"PRAGMA index_info({index.name})"))]
        if present and present != [column.name for column in index.columns]:
            index.drop(connection)
            index.create(connection)
            changed = True
    return changed


SQLITE_SCHEMA_UPGRADES.append(upgrade_sqlite_listing_indexes)
