"""semantic index of records

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 14:00:00+00:00

Both databases: ``record_index`` (per-record index state and lease), ``record_chunks`` (embedded
pieces of text, vectors as float32 bytes) and ``record_index_owners`` (a per-owner counter of
chunk changes). Every live record is marked pending, so an existing deployment gets indexed.
Tables frozen from common/models/record_index.py.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARK_LIVE_RECORDS_PENDING = (
    "INSERT INTO record_index (id, owner_id, wanted_version, status, attempts, next_attempt_at, updated_at) "
    "SELECT id, owner_id, version, 'pending', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP "
    "FROM records WHERE deleted_at IS NULL"
)


def upgrade() -> None:
    op.create_table(
        "record_index",
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("wanted_version", sa.Integer(), nullable=False),
        sa.Column("indexed_version", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("record_index", schema=None) as batch_op:
        batch_op.create_index("ix_record_index_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_record_index_owner_status", ["owner_id", "status"], unique=False)
    op.create_table(
        "record_chunks",
        sa.Column("record_id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("record_chunks", schema=None) as batch_op:
        batch_op.create_index("ix_record_chunks_owner_model", ["owner_id", "model", "generation"], unique=False)
        batch_op.create_index("ix_record_chunks_record", ["record_id"], unique=False)
    op.create_table(
        "record_index_owners",
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(MARK_LIVE_RECORDS_PENDING)


def downgrade() -> None:
    op.drop_table("record_index_owners")
    with op.batch_alter_table("record_chunks", schema=None) as batch_op:
        batch_op.drop_index("ix_record_chunks_record")
        batch_op.drop_index("ix_record_chunks_owner_model")
    op.drop_table("record_chunks")
    with op.batch_alter_table("record_index", schema=None) as batch_op:
        batch_op.drop_index("ix_record_index_owner_status")
        batch_op.drop_index("ix_record_index_due")
    op.drop_table("record_index")
