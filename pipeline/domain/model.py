"""Entities of the domain: plain frozen dataclasses, no I/O.

The store maps rows to these; services pass them to the policy functions.
Times are timezone-aware UTC datetimes passed in by the caller.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pipeline.domain.states import State


class Role(str, enum.Enum):
    SUBMITTER = "submitter"
    REVIEWER = "reviewer"
    OWNER = "owner"
    DELEGATE = "delegate"
    DISTRIBUTOR = "distributor"
    ADMIN = "admin"


class Stage(str, enum.Enum):
    TEXT = "text"
    AUDIO = "audio"
    OWNER = "owner"  # the voice owner (or a named delegate) approves this exact revision


class Decision(str, enum.Enum):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"


class ApprovalPolicyKind(str, enum.Enum):
    BLANKET = "blanket"  # consent covers every statement inside the scope
    PER_STATEMENT = "per_statement"  # the owner or a named delegate approves each statement


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    public_key: bytes  # raw Ed25519 public key, 32 bytes


@dataclass(frozen=True)
class Scope:
    purposes: frozenset[str]
    channels: frozenset[str]
    languages: frozenset[str]


@dataclass(frozen=True)
class Consent:
    voice_id: str
    owner: str
    organisation: str
    scope: Scope
    valid_from: datetime
    valid_until: datetime
    policy: ApprovalPolicyKind
    approvers: frozenset[str] = frozenset()  # user names: the owner's account and named delegates
    statement: str = ""  # the exact consent statement the owner spoke or signed
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    owner_account: str | None = None  # the owner's own user (role owner), who signs with their key
    # Each approver's key fingerprint as the signed record binds it (empty: a record from before keys were bound).
    approver_keys: tuple[tuple[str, str], ...] = ()

    def bound_key(self, name: str) -> str | None:
        """The fingerprint the consent record binds `name` to, if it binds one."""
        return dict(self.approver_keys).get(name)


class VoiceState(str, enum.Enum):
    """A voice's life: enrolled (consent proven, no usable model) → trained → ready (renders) → revoked."""

    ENROLLED = "enrolled"
    TRAINED = "trained"
    READY = "ready"
    REVOKED = "revoked"


class ConsentKind(str, enum.Enum):
    """How a consent record came to be."""

    PROFILE = "profile"  # from a voice profile's voice.toml (`voxgate voice add`), witnessed by an admin
    ENROLLMENT = "enrollment"  # spoken by the owner and checked (`voxgate voice enroll`)
    RENEWAL = "renewal"  # a signed change of scope or end date to an earlier record (`voxgate consent renew`)


class SignerCapacity(str, enum.Enum):
    """In which capacity someone signed a consent record."""

    WITNESS = "witness"  # the operator who ran the enrollment, or the admin who added the profile
    OWNER = "owner"  # the voice owner, with their own key
    RENEWED_BY = "renewed_by"  # the owner, a named delegate or an admin who narrowed the scope


@dataclass(frozen=True)
class Statement:
    id: int
    voice_id: str
    language: str
    purpose: str
    channel: str
    submitter: str
    state: State
    revision: int
    revision_hash: str
    authors: frozenset[str]  # whoever submitted or revised it, across every revision


@dataclass(frozen=True)
class Approval:
    statement_id: int
    stage: Stage
    subject_hash: str  # revision hash for text/owner stages, audio hash for the audio stage
    reviewer: str
    decision: Decision
    signature: bytes
    comment: str = ""
    version: int = 1  # 1: `approval_payload` (before workspace ids); 2: `ApprovalPayload`
    revision: int | None = None  # the revision number signed (v2); a v1 approval names only the hash
    listened: bool = False
    key_fingerprint: str | None = None  # the key that signed (v2)
    seq: int | None = None  # the audit event that recorded it: its place in the chain (v2)
    #: A passkey approval: the fingerprint of the reviewer's own key that vouched for the passkey (they invited
    #: themselves with it), so a consent that binds that key accepts the passkey's approval too.
    vouched_by: str | None = None


@dataclass(frozen=True)
class ReviewPolicy:
    """How many distinct reviewers each stage needs (workspace configuration)."""

    text_reviewers: int = 1
    audio_reviewers: int = 1


@dataclass(frozen=True)
class Requirement:
    reviewers: int
    owner_approvers: frozenset[str] = field(default_factory=frozenset)  # empty: none needed
    owner_keys: tuple[tuple[str, str], ...] = ()  # (approver, key fingerprint) the consent record binds
    must_listen: bool = False  # audio stage with no recogniser for the language: only `listened` approvals count


def canonical_json(data: Any) -> bytes:
    """Deterministic JSON bytes: the form every hash and signature is computed over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def text_hash(text: str) -> str:
    """The sha256 of a revision's exact text (UTF-8), which approvals sign."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def consent_payload(record: dict[str, Any]) -> bytes:
    """The exact bytes every signer of a consent record signs (its sha256 is the record's hash)."""
    return canonical_json({"kind": "voxgate.consent/1", **record})


def approval_payload(statement_id: int, stage: Stage, subject_hash: str, reviewer: str, decision: Decision) -> bytes:
    """The exact bytes a reviewer signs: what they saw, at which stage, and what they decided."""
    return canonical_json(
        {
            "kind": "voxgate.approval/1",
            "statement": statement_id,
            "stage": stage.value,
            "subject_sha256": subject_hash,
            "reviewer": reviewer,
            "decision": decision.value,
        }
    )


APPROVAL_V2: Final = "voxgate.approval/2"


@dataclass(frozen=True)
class ApprovalPayload:
    """What a v2 approval signs, for the CLI's Ed25519 keys and passkeys alike (one format).

    - `workspace`: the workspace id, so a decision cannot be replayed into another workspace;
    - `revision` (number) and `subject_sha256`: reverting a text A→B→A makes a new revision number,
      so an approval of the first A never counts for the third;
    - `listened`: the audio reviewer says they heard the whole draft (required where no recogniser
      covers the language); `False` at the text and owner stages.

    A passkey signs WebAuthn's `authenticatorData || sha256(clientDataJSON)`, whose challenge is
    `challenge(payload, nonce)`: the payload's sha256 followed by the server's expiring nonce.
    """

    workspace: str
    statement_id: int
    revision: int
    stage: Stage
    subject_hash: str
    reviewer: str
    decision: Decision
    listened: bool = False

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "kind": APPROVAL_V2,
                "workspace": self.workspace,
                "statement": self.statement_id,
                "revision": self.revision,
                "stage": self.stage.value,
                "subject_sha256": self.subject_hash,
                "reviewer": self.reviewer,
                "decision": self.decision.value,
                "listened": self.listened,
            }
        )

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    def challenge(self, nonce: bytes) -> bytes:
        """The WebAuthn challenge for this payload: sha256(payload) || nonce."""
        return self.sha256 + nonce
