"""Consent enrollment: pending consent scripts, enrollments with their recordings, signed consent records.

Adds the tables `consent_scripts`, `enrollments`, `enrollment_recordings` and
`consent_signatures`, and nullable columns on `consents` (kind, owner_account,
enrollment_id, supersedes_id, record_json). Rows written before this
migration keep NULL there and read as profile consents.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import pipeline.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC = pipeline.store.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "consent_scripts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("voice_id", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("challenge", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("owner_account", sa.String(length=64), nullable=True),
        sa.Column("organisation", sa.String(length=200), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("valid_until", UTC(length=32), nullable=False),
        sa.Column("policy", sa.String(length=16), nullable=False),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC(length=32), nullable=False),
        sa.Column("used_at", UTC(length=32), nullable=True),
        sa.ForeignKeyConstraint(["owner_account"], ["users.name"]),
        sa.ForeignKeyConstraint(["created_by"], ["users.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("challenge"),
    )
    with op.batch_alter_table("consent_scripts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_scripts_voice_id"), ["voice_id"], unique=False)

    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("voice_id", sa.String(length=64), nullable=False),
        sa.Column("script_id", sa.Integer(), nullable=False),
        sa.Column("folder", sa.Text(), nullable=False),
        sa.Column("consent_audio", sa.Text(), nullable=False),
        sa.Column("consent_audio_sha256", sa.String(length=64), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("asr", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC(length=32), nullable=False),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["voice_id"], ["voices.id"]),
        sa.ForeignKeyConstraint(["script_id"], ["consent_scripts.id"]),
        sa.ForeignKeyConstraint(["operator"], ["users.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("script_id"),
    )
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrollments_voice_id"), ["voice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_enrollments_consent_audio_sha256"), ["consent_audio_sha256"], unique=False)

    op.create_table(
        "enrollment_recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["enrollment_id"], ["enrollments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("enrollment_id", "name"),
    )
    with op.batch_alter_table("enrollment_recordings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrollment_recordings_enrollment_id"), ["enrollment_id"], unique=False)

    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("owner_account", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("enrollment_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("supersedes_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("record_json", sa.Text(), nullable=True))
        batch_op.create_foreign_key("fk_consents_enrollment_id", "enrollments", ["enrollment_id"], ["id"])

    op.create_table(
        "consent_signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.Column("signer", sa.String(length=64), nullable=False),
        sa.Column("capacity", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("created_at", UTC(length=32), nullable=False),
        sa.ForeignKeyConstraint(["consent_id"], ["consents.id"]),
        sa.ForeignKeyConstraint(["signer"], ["users.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("consent_id", "signer", "capacity"),
    )
    with op.batch_alter_table("consent_signatures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_signatures_consent_id"), ["consent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consent_signatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_signatures_consent_id"))
    op.drop_table("consent_signatures")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_constraint("fk_consents_enrollment_id", type_="foreignkey")
        for column in ("record_json", "supersedes_id", "enrollment_id", "owner_account", "kind"):
            batch_op.drop_column(column)
    with op.batch_alter_table("enrollment_recordings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollment_recordings_enrollment_id"))
    op.drop_table("enrollment_recordings")
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollments_consent_audio_sha256"))
        batch_op.drop_index(batch_op.f("ix_enrollments_voice_id"))
    op.drop_table("enrollments")
    with op.batch_alter_table("consent_scripts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_scripts_voice_id"))
    op.drop_table("consent_scripts")
