"""Access tokens for the distributors' portal and `voxgate pull`.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import pipeline.store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", pipeline.store.models.UTCDateTime(length=32), nullable=False),
        sa.Column("expires_at", pipeline.store.models.UTCDateTime(length=32), nullable=False),
        sa.Column("revoked_at", pipeline.store.models.UTCDateTime(length=32), nullable=True),
        sa.ForeignKeyConstraint(["user"], ["users.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_tokens_user"), ["user"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_tokens_user"))
    op.drop_table("access_tokens")
