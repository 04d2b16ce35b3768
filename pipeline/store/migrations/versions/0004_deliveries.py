"""Per-recipient copies: `deliveries`, `delivery_files`, and each clip's unmarked premaster.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import pipeline.store.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.add_column(sa.Column("premaster_sha256", sa.String(length=64), nullable=True))
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("created_at", pipeline.store.models.UTCDateTime(length=32), nullable=False),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"]),
        sa.ForeignKeyConstraint(["recipient"], ["users.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("clip_id", "recipient"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_clip_id"), ["clip_id"], unique=False)
    op.create_table(
        "delivery_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("delivery_id", "format"),
    )
    with op.batch_alter_table("delivery_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_files_delivery_id"), ["delivery_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_files_sha256"), ["sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_files_sha256"))
        batch_op.drop_index(batch_op.f("ix_delivery_files_delivery_id"))
    op.drop_table("delivery_files")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_clip_id"))
    op.drop_table("deliveries")
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_column("premaster_sha256")
