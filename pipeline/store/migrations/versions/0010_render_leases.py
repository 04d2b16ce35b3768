"""Render leases: which worker holds a render and until when; at most one live clip per statement revision.

A worker that claims a statement renews its lease while it renders; when the
lease runs out (the worker died), any live worker may reclaim the statement.
The partial unique index is the store's own guarantee that a revision is
rendered once: a second live clip for it cannot be inserted, whatever a
worker believes.

Revision ID: 0010
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

import pipeline.store.models

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

LIVE = sa.text("state IN ('rendering', 'draft', 'released')")


def upgrade() -> None:
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("lease_until", pipeline.store.models.UTCDateTime(length=32), nullable=True))
    op.create_index("ux_clips_live_revision", "clips", ["statement_id", "revision"], unique=True,
                    sqlite_where=LIVE, postgresql_where=LIVE)


def downgrade() -> None:
    op.drop_index("ux_clips_live_revision", table_name="clips")
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("worker")
