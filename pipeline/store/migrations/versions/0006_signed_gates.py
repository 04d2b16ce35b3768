"""Signed gates: append-only `revocations` and the signed `audit_head` kept with the database.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import pipeline.store.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("voice_id", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("record_json", sa.Text(), nullable=False),
        sa.Column("record_sha256", sa.String(length=64), nullable=False),
        sa.Column("org_signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("revoker", sa.String(length=64), nullable=False),
        sa.Column("revoker_signature", sa.LargeBinary(length=64), nullable=True),
        sa.Column("created_at", pipeline.store.models.UTCDateTime(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("record_sha256"),
    )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revocations_voice_id"), ["voice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_revocations_model_sha256"), ["model_sha256"], unique=False)
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("revocations_sha256", sa.String(length=64), nullable=False),
        sa.Column("vetoes_sha256", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("audit_head")
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocations_model_sha256"))
        batch_op.drop_index(batch_op.f("ix_revocations_voice_id"))
    op.drop_table("revocations")
