"""People's own keys: key history, disabled users, v2 approvals, consent approvers bound by key.

`user_keys` lists every public key a person has had, from the audit event that
registered it (`from_seq`) to the one that replaced it (`until_seq`); the keys
of existing users are carried over as valid from the start (seq 0).

Revision ID: 0005
Revises: 0004
"""

import base64
import hashlib

import sqlalchemy as sa
from alembic import op

import pipeline.store.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _fingerprint(public: bytes) -> str:
    # The OpenSSH blob of an Ed25519 key (as pipeline.identity.personal.fingerprint), kept inline so the
    # migration does not change when the module does.
    blob = b"".join(len(p).to_bytes(4, "big") + p for p in (b"ssh-ed25519", public))
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def upgrade() -> None:
    table = op.create_table(
        "user_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("from_seq", sa.Integer(), nullable=False),
        sa.Column("until_seq", sa.Integer(), nullable=True),
        sa.Column("created_at", pipeline.store.models.UTCDateTime(length=32), nullable=False),
        sa.ForeignKeyConstraint(["user"], ["users.name"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("user_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_keys_user"), ["user"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", pipeline.store.models.UTCDateTime(length=32), nullable=True))
        batch_op.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("listened", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("key_fingerprint", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("approver_keys", sa.JSON(), nullable=True))
    bind = op.get_bind()
    users = bind.execute(sa.text("SELECT name, public_key, created_at FROM users")).all()
    if users:
        op.bulk_insert(table, [{"user": name, "public_key": bytes(public), "fingerprint": _fingerprint(bytes(public)),
                                "from_seq": 0, "until_seq": None,
                                "created_at": pipeline.store.models.UTCDateTime().process_result_value(at, None)}
                               for name, public, at in users])


def downgrade() -> None:
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_column("approver_keys")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        for column in ("seq", "key_fingerprint", "listened", "revision", "payload_version"):
            batch_op.drop_column(column)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("disabled_reason")
        batch_op.drop_column("disabled_at")
    with op.batch_alter_table("user_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_keys_user"))
    op.drop_table("user_keys")
