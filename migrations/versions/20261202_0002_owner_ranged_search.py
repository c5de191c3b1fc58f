"""owner-ranged search index on SQLite

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 05:00:00+00:00

SQLite only (PostgreSQL keeps its GIN index): ``records_fts`` (document id = records.rowid) is
replaced by ``records_search``, whose document ids are ``owner number * 2**32 + records.rowid``
(owner numbers in ``records_search_owners``), so a search reads only its owner's postings. The
new index is filled from the live records. DDL frozen from common/models/record.py.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
SEARCH_DDL = (
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
FILL = (
    "DELETE FROM records_search",
    "INSERT OR IGNORE INTO records_search_owners(owner_id) SELECT DISTINCT owner_id FROM records",
    "INSERT INTO records_search(rowid, title, content) "
    "SELECT o.number * 4294967296 + r.rowid, r.title, r.content FROM records r "
    "JOIN records_search_owners o ON o.owner_id = r.owner_id WHERE r.deleted_at IS NULL",
    "INSERT INTO records_search(records_search) VALUES ('optimize')",
)
# The index of revision 0001.
LEGACY_DDL = (
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
    "INSERT INTO records_fts(records_fts) VALUES ('rebuild')",
)
LEGACY_OBJECTS = (
    "DROP TRIGGER IF EXISTS records_fts_insert",
    "DROP TRIGGER IF EXISTS records_fts_delete",
    "DROP TRIGGER IF EXISTS records_fts_update",
    "DROP TABLE IF EXISTS records_fts",
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if not _sqlite():
        return
    present = {row[0] for row in op.get_bind().exec_driver_sql("SELECT name FROM sqlite_master")}
    if "records_search" in present and "records_fts" not in present:  # create_all was first
        return
    # The refill and the drop of the old index commit together: cut short, it is done again.
    for statement in (*SEARCH_DDL, *FILL, *LEGACY_OBJECTS):
        op.execute(statement)


def downgrade() -> None:
    if not _sqlite():
        return
    for statement in (
        "DROP TRIGGER IF EXISTS records_search_insert",
        "DROP TRIGGER IF EXISTS records_search_update",
        "DROP TRIGGER IF EXISTS records_search_delete",
        "DROP TABLE IF EXISTS records_search",
        "DROP TABLE IF EXISTS records_search_owners",
        *LEGACY_DDL,
    ):
        op.execute(statement)
