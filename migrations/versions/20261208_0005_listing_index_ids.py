"""records list indexes end with id

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 00:30:00+00:00

The records list orders by ``updated_at`` then ``id`` (docs/api.md §6); with ``id`` in its two
indexes the database reads a page in index order instead of sorting every record that shares an
``updated_at`` (an import's, written at one instant), on both databases.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_records_owner_updated": ["owner_id", "deleted_at", "updated_at"],
    "ix_records_owner_pinned_updated": ["owner_id", "pinned", "updated_at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name="records")
        op.create_index(name, "records", [*columns, "id"], unique=False)


def downgrade() -> None:
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name="records")
        op.create_index(name, "records", columns, unique=False)
