"""Announcers for the audible disclosure (recorded disclosures, operator announcer models).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

import pipeline.store.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "announcers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("voice_id", sa.String(length=64), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("config_sha256", sa.String(length=64), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", pipeline.store.models.UTCDateTime(length=32), nullable=False),
        sa.Column("retired_at", pipeline.store.models.UTCDateTime(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("announcers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_announcers_language"), ["language"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("announcers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_announcers_language"))
    op.drop_table("announcers")
