"""Database tables (SQLAlchemy 2 declarative). Schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from datetime import timezone

from sqlalchemy import (JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, TypeDecorator, UniqueConstraint,
                        text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes stored as ISO 8601 text, so SQLite and PostgreSQL sort and compare alike."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")

    def process_result_value(self, value: str | None, dialect: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


_LIVE_CLIP = "state IN ('rendering', 'draft', 'released')"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: UTCDateTime}


class UserRow(Base):
    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))  # the current key; history in user_keys
    created_at: Mapped[datetime]
    # Migration 0005. The audit event `voxgate.user.disabled` is what gates read; these are for listing.
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class UserKeyRow(Base):
    """One public key a person has had (migration 0005), valid from one audit event until the next key's."""

    __tablename__ = "user_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    fingerprint: Mapped[str] = mapped_column(String(64))
    from_seq: Mapped[int] = mapped_column(Integer)  # the audit event that registered it (0: before 0005)
    until_seq: Mapped[int | None] = mapped_column(Integer)  # the audit event that replaced it
    created_at: Mapped[datetime]


class VoiceRow(Base):
    __tablename__ = "voices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    languages: Mapped[list[str]]
    engine: Mapped[str] = mapped_column(String(32))
    model_ref: Mapped[str] = mapped_column(Text)  # path, or package:<pkg>/<file>
    config_ref: Mapped[str | None] = mapped_column(Text)
    model_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # enrolled → trained → ready → revoked
    profile_sha256: Mapped[str] = mapped_column(String(64))  # the voice.toml as added
    created_at: Mapped[datetime]


class ConsentRow(Base):
    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voice_id: Mapped[str] = mapped_column(ForeignKey("voices.id"), index=True)
    owner: Mapped[str] = mapped_column(String(200))
    organisation: Mapped[str] = mapped_column(String(200))
    statement: Mapped[str] = mapped_column(Text)  # the exact words the owner consented with
    purposes: Mapped[list[str]]
    channels: Mapped[list[str]]
    languages: Mapped[list[str]]
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    policy: Mapped[str] = mapped_column(String(16))
    approvers: Mapped[list[str]]
    record_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    # Added by migration 0002 (nullable: rows written before it have none of them).
    kind: Mapped[str | None] = mapped_column(String(16))  # profile | enrollment | renewal; None: profile
    owner_account: Mapped[str | None] = mapped_column(String(64))  # the owner's user, who signs with their key
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))  # the proof it rests on
    supersedes_id: Mapped[int | None] = mapped_column(Integer)  # the record a renewal replaces
    record_json: Mapped[str | None] = mapped_column(Text)  # the signed record; its sha256 is record_sha256
    # Migration 0005: {approver name: key fingerprint}, as the signed record binds them (None before 0005).
    approver_keys: Mapped[dict[str, Any] | None]


class StatementRow(Base):
    __tablename__ = "statements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voice_id: Mapped[str] = mapped_column(ForeignKey("voices.id"), index=True)
    language: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    submitter: Mapped[str] = mapped_column(ForeignKey("users.name"))
    state: Mapped[str] = mapped_column(String(24), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    revisions: Mapped[list[RevisionRow]] = relationship(order_by="RevisionRow.number", lazy="selectin")


class RevisionRow(Base):
    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("statement_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("statements.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(ForeignKey("users.name"))
    created_at: Mapped[datetime]


class ApprovalRow(Base):
    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("statements.id"), index=True)
    stage: Mapped[str] = mapped_column(String(8))
    subject_sha256: Mapped[str] = mapped_column(String(64))
    reviewer: Mapped[str] = mapped_column(ForeignKey("users.name"))
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime]
    # Migration 0005: v2 approvals (pipeline.domain.ApprovalPayload). NULL version: a v1 approval from before.
    payload_version: Mapped[int | None] = mapped_column(Integer)
    revision: Mapped[int | None] = mapped_column(Integer)
    listened: Mapped[bool | None]
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(Integer)  # the audit event that recorded it (its place in the chain)


class ClipRow(Base):
    __tablename__ = "clips"
    __table_args__ = (  # migration 0010: at most one live clip per statement revision
        Index("ux_clips_live_revision", "statement_id", "revision", unique=True,
              sqlite_where=text(_LIVE_CLIP), postgresql_where=text(_LIVE_CLIP)),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the clip serial
    statement_id: Mapped[int] = mapped_column(ForeignKey("statements.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    revision_sha256: Mapped[str] = mapped_column(String(64))
    voice_id: Mapped[str] = mapped_column(ForeignKey("voices.id"))
    model_sha256: Mapped[str] = mapped_column(String(64))
    audio_sha256: Mapped[str] = mapped_column(String(64))  # the WAV master's bytes: what audio sign-off signs
    settings: Mapped[dict[str, Any]]
    figures: Mapped[dict[str, Any]]  # duration, loudness, true peak, watermark score, …
    labels: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))  # draft → released → revoked | superseded
    created_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Migration 0004: the master before its payload mark (presence-marked, loudness-normalised), kept in
    # the file store and never handed out; every recipient's copy is marked from it. NULL before 0004.
    premaster_sha256: Mapped[str | None] = mapped_column(String(64))
    # Migration 0010: while `rendering`, the worker holding the render and when its lease runs out.
    worker: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    step: Mapped[str | None] = mapped_column(String(32))  # migration 0011: the render step its worker is at
    files: Mapped[list[ClipFileRow]] = relationship(order_by="ClipFileRow.format", lazy="selectin")


class ClipFileRow(Base):
    __tablename__ = "clip_files"
    __table_args__ = (UniqueConstraint("clip_id", "format"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))  # key in the content-addressed file store
    size: Mapped[int] = mapped_column(Integer)


class DeliveryRow(Base):
    """One recipient's copy of a released clip (migration 0004); its id, above DELIVERY_BASE, is in their mark."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("clip_id", "recipient"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id"), index=True)
    recipient: Mapped[str] = mapped_column(ForeignKey("users.name"))
    created_at: Mapped[datetime]
    files: Mapped[list[DeliveryFileRow]] = relationship(order_by="DeliveryFileRow.format", lazy="selectin")


class DeliveryFileRow(Base):
    __tablename__ = "delivery_files"
    __table_args__ = (UniqueConstraint("delivery_id", "format"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)


class AuditRow(Base):
    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class AccessTokenRow(Base):
    """A bearer token for the portal and `voxgate pull`; only its sha256 is stored."""

    __tablename__ = "access_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


# --- consent enrollment (migration 0002) --------------------------------------


class ConsentScriptRow(Base):
    """A printed consent script waiting for the owner's recording: a pending enrollment, keyed by voice id.

    The voice need not exist yet (a new voice is being enrolled), so there is no foreign key to voices.
    Each challenge phrase is unique across the store and a script is used by at most one enrollment.
    """

    __tablename__ = "consent_scripts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voice_id: Mapped[str] = mapped_column(String(64), index=True)
    language: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    challenge: Mapped[str] = mapped_column(String(200), unique=True)
    owner: Mapped[str] = mapped_column(String(200))
    owner_account: Mapped[str | None] = mapped_column(ForeignKey("users.name"))
    organisation: Mapped[str] = mapped_column(String(200))
    purposes: Mapped[list[str]]
    channels: Mapped[list[str]]
    languages: Mapped[list[str]]
    valid_until: Mapped[datetime]
    policy: Mapped[str] = mapped_column(String(16))
    approvers: Mapped[list[str]]
    created_by: Mapped[str] = mapped_column(ForeignKey("users.name"))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class EnrollmentRow(Base):
    """A proven enrollment: the consent audio, the checks run on it and where its files are kept."""

    __tablename__ = "enrollments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voice_id: Mapped[str] = mapped_column(ForeignKey("voices.id"), index=True)
    script_id: Mapped[int] = mapped_column(ForeignKey("consent_scripts.id"), unique=True)
    folder: Mapped[str] = mapped_column(Text)  # relative to the workspace home
    consent_audio: Mapped[str] = mapped_column(Text)  # file name inside `folder`
    consent_audio_sha256: Mapped[str] = mapped_column(String(64), index=True)
    transcript: Mapped[str | None] = mapped_column(Text)  # None when the operator confirmed by hand
    checks: Mapped[dict[str, Any]]
    asr: Mapped[str] = mapped_column(String(64))  # "whisper tiny.en" or "confirmed by operator"
    operator: Mapped[str] = mapped_column(ForeignKey("users.name"))
    created_at: Mapped[datetime]
    elapsed_s: Mapped[float]


class RecordingRow(Base):
    """One training recording covered by an enrollment, with its transcript."""

    __tablename__ = "enrollment_recordings"
    __table_args__ = (UniqueConstraint("enrollment_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))  # file name inside the enrollment folder's wavs/
    sha256: Mapped[str] = mapped_column(String(64))
    transcript: Mapped[str] = mapped_column(Text)
    duration_s: Mapped[float]
    sample_rate: Mapped[int] = mapped_column(Integer)
    similarity: Mapped[float]  # speaker similarity to the consent audio


class ConsentSignatureRow(Base):
    """An Ed25519 signature over a consent record's canonical JSON (`consents.record_json`)."""

    __tablename__ = "consent_signatures"
    __table_args__ = (UniqueConstraint("consent_id", "signer", "capacity"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consent_id: Mapped[int] = mapped_column(ForeignKey("consents.id"), index=True)
    signer: Mapped[str] = mapped_column(ForeignKey("users.name"))
    capacity: Mapped[str] = mapped_column(String(16))  # witness | owner | renewed_by
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime]


# --- signed gates (migration 0006) -------------------------------------------


class RevocationRow(Base):
    """A signed, append-only revocation of consent, bound to the owner and the model hash (never updated)."""

    __tablename__ = "revocations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voice_id: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str] = mapped_column(String(200))
    model_sha256: Mapped[str] = mapped_column(String(64), index=True)
    record_json: Mapped[str] = mapped_column(Text)  # `domain.Revocation.to_bytes()`
    record_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    org_signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    revoker: Mapped[str] = mapped_column(String(64))
    revoker_signature: Mapped[bytes | None] = mapped_column(LargeBinary(64))  # where the revoker's key was at hand
    created_at: Mapped[datetime]


class AuditHeadRow(Base):
    """The signed audit head, kept with the database (one row, id 1): the last event and the record sets."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    revocations_sha256: Mapped[str] = mapped_column(String(64))  # `domain.set_digest` of revocation record hashes
    vetoes_sha256: Mapped[str] = mapped_column(String(64))  # … of rejections and requests for changes
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class AnnouncerRow(Base):
    """A registered announcer for the audible disclosure in one language (migration 0008).

    `kind` is "recording" (a person read the disclosure once: `sha256` is the WAV in the file
    store, `text_sha256` the words it was checked against, `voice_id` whose disclosure it is)
    or "model" (an operator's Piper voice: `path`, `sha256` of the .onnx, `config_sha256` of its
    .onnx.json). espeak-ng, the last resort, needs no row. `retired_at` set: no longer used.
    """

    __tablename__ = "announcers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    language: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    voice_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    config_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    text_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    checks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None] = mapped_column(nullable=True)


# --- portal sessions and passkeys (migration 0007) ------------------------------


class PortalSessionRow(Base):
    """A signed-in portal session: the cookie holds a random id, the store only its sha256.

    A session made with an access token ends with that token (revoked or expired); one made with
    a passkey ends when the passkey is disabled. Logging out sets `ended_at`.
    """

    __tablename__ = "portal_sessions"
    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    token_sha256: Mapped[str | None] = mapped_column(String(64))
    passkey_id: Mapped[int | None] = mapped_column(ForeignKey("passkeys.id"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class PasskeyInvitationRow(Base):
    """A one-time link for registering a passkey for an existing user; only its sha256 is stored."""

    __tablename__ = "passkey_invitations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.name"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PasskeyRow(Base):
    """A user's WebAuthn credential: one of their keys, kept (with its history) after it is disabled."""

    __tablename__ = "passkeys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # base64url, as the browser sends it
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key
    sign_count: Mapped[int] = mapped_column(Integer)
    rp_id: Mapped[str] = mapped_column(String(255))
    origin: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class PasskeyChallengeRow(Base):
    """A server nonce handed to the browser once, for one registration or one signed decision."""

    __tablename__ = "passkey_challenges"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex
    purpose: Mapped[str] = mapped_column(String(16))  # register | sign-in | approve
    user: Mapped[str | None] = mapped_column(ForeignKey("users.name"))
    session_sha256: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str | None] = mapped_column(Text)  # the approval payload's canonical JSON
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PasskeyApprovalRow(Base):
    """The WebAuthn assertion behind an approval: everything needed to re-verify it offline."""

    __tablename__ = "passkey_approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    approval_id: Mapped[int] = mapped_column(ForeignKey("approvals.id"), unique=True)
    passkey_id: Mapped[int] = mapped_column(ForeignKey("passkeys.id"), index=True)
    payload: Mapped[str] = mapped_column(Text)  # ApprovalPayload.to_bytes(), as signed
    nonce: Mapped[str] = mapped_column(String(64))  # hex
    authenticator_data: Mapped[bytes] = mapped_column(LargeBinary)
    client_data_json: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # the credential's COSE key, copied for offline checks
    rp_id: Mapped[str] = mapped_column(String(255))
    origin: Mapped[str] = mapped_column(String(255))


class WorkerHeartbeatRow(Base):
    """When a copies worker (by its queue executor id) last showed it was alive (migration 0011)."""

    __tablename__ = "worker_heartbeats"
    executor_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime]
