"""record history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 15:00:00+00:00

Both databases: ``record_revisions`` (the states of a record before each change of its title,
content or tags, and stale edits kept as sent), two columns of ``records`` (``text_version``:
the version at which the text last changed, NULL for records older than this revision;
``device``: who made that change), ``record_change_counters.purged_seq`` (the owner's highest
purged tombstone change number, for sync) and a partial index of tombstones for the purge.
Columns are added in place (``ALTER TABLE ... ADD COLUMN``; on SQLite never by copying
``records``, whose rowids the search index maps). Tables frozen from
common/models/record_revision.py and common/models/record.py.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOMBSTONES = sa.text("deleted_at IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "record_revisions",
        sa.Column("record_id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("content_format", sa.String(length=8), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_record_revisions_record_revision", "record_revisions", ["record_id", "revision"], unique=True)
    op.add_column(
        "record_change_counters", sa.Column("purged_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("records", sa.Column("text_version", sa.Integer(), nullable=True))
    op.add_column("records", sa.Column("device", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_records_tombstones",
        "records",
        ["deleted_at"],
        unique=False,
        sqlite_where=TOMBSTONES,
        postgresql_where=TOMBSTONES,
    )


def downgrade() -> None:
    op.drop_index("ix_records_tombstones", table_name="records")
    # In place on both databases (SQLite 3.35+ drops a column without copying the table).
    op.execute("ALTER TABLE records DROP COLUMN device")
    op.execute("ALTER TABLE records DROP COLUMN text_version")
    op.execute("ALTER TABLE record_change_counters DROP COLUMN purged_seq")
    op.drop_index("ix_record_revisions_record_revision", table_name="record_revisions")
    op.drop_table("record_revisions")
