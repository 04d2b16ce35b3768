"""Workers seen from every machine: copies workers' heartbeats, and the step a render is at.

A copy job left PENDING by a worker whose heartbeat stopped is handed back to
the queue by any live worker (services.copy_worker). A rendering clip names
the step its worker is at, so `voxgate render ID` and `jobs list` show it
whichever worker runs it.

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
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_column("step")
    op.drop_table("worker_heartbeats")
