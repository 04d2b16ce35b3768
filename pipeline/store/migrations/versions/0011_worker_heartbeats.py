"""Worker heartbeats: when each copies worker last showed it was alive, seen from every machine.

A copy job left PENDING by a worker whose heartbeat stopped is handed back to
the queue by any live worker (services.copy_worker).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

import pipeline.store.models

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("executor_id", sa.String(length=128), nullable=False),
        sa.Column("seen_at", pipeline.store.models.UTCDateTime(length=32), nullable=False),
        sa.PrimaryKeyConstraint("executor_id"),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
