"""Every gate, decided from signed records: consent status, revocations and a clip's standing.

Services read the records (approvals with their signatures checked, the
consent record, the revocation records) and ask these functions; a state
column is never the proof. Nothing here touches a database, a file or the
clock (`now` is passed in).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.domain.clips import ClipState
from pipeline.domain.model import Consent, ConsentKind, canonical_json


class ConsentStatus(str, enum.Enum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"


def consent_status(consent: Consent, now: datetime) -> ConsentStatus:
    """The one reading of a consent's status at `now` (a revocation counts from its own time)."""
    if consent.revoked_at is not None and consent.revoked_at <= now:
        return ConsentStatus.REVOKED
    if now >= consent.valid_until:
        return ConsentStatus.EXPIRED
    if now < consent.valid_from:
        return ConsentStatus.NOT_YET_VALID
    return ConsentStatus.ACTIVE


@dataclass(frozen=True)
class Revocation:
    """A signed, append-only revocation: bound to the owner and the model, not to a voice id."""

    voice_id: str
    owner: str
    model_sha256: str  # "" for a voice that had no model yet
    consent_sha256: str
    reason: str
    revoker: str
    at: datetime

    def record(self) -> dict[str, Any]:
        return {"kind": "voxgate.revocation/1", "voice": self.voice_id, "owner": self.owner,
                "model_sha256": self.model_sha256, "consent_sha256": self.consent_sha256, "reason": self.reason,
                "revoker": self.revoker, "at": self.at.isoformat()}

    def to_bytes(self) -> bytes:
        return canonical_json(self.record())


def revocation_for(revocations: Iterable[Revocation], *, voice_id: str, model_sha256: str, consent: Consent | None,
                   consent_kind: ConsentKind | None, consent_created_at: datetime | None) -> Revocation | None:
    """The revocation that binds this voice now, or None.

    A revocation binds every voice speaking with the revoked model (under any
    id or owner name), and the revoked voice id itself. Only a new enrollment
    (the owner's spoken consent, recorded after the revocation) lifts it.
    """
    for r in revocations:
        same_model = bool(r.model_sha256) and r.model_sha256 == model_sha256
        same_voice = r.voice_id == voice_id
        if not (same_model or same_voice):
            continue
        lifted = (consent is not None and consent_kind is ConsentKind.ENROLLMENT and same_voice
                  and consent_created_at is not None and consent_created_at > r.at)
        if not lifted:
            return r
    return None


def set_digest(items: Iterable[str]) -> str:
    """The sha256 of a set of record digests (order does not matter): what the signed audit head commits to."""
    return hashlib.sha256("\n".join(sorted(set(items))).encode()).hexdigest()


@dataclass(frozen=True)
class ClipEvidence:
    """What the signed records say about one clip, gathered by the caller."""

    clip_id: int
    claimed: ClipState  # the state column: a claim, never a proof
    text_complete: bool  # the clip's revision holds every text (and owner) approval its policy needs, verified
    audio_complete: bool  # its master holds every audio approval, verified, and no verified veto
    revoked: bool  # a revocation record binds its voice
    consent_problem: str | None  # why the consent record cannot be relied on (None: it verifies)


@dataclass(frozen=True)
class ClipStanding:
    state: ClipState  # what the signed records support
    reason: str  # empty when the records support the claim

    @property
    def released(self) -> bool:
        return self.state is ClipState.RELEASED


def clip_standing(e: ClipEvidence) -> ClipStanding:
    """The state the records support: `released` only with every approval signed and no revocation.

    The column can only make things worse (a clip marked revoked stays revoked), never better.
    """
    if e.revoked or e.claimed is ClipState.REVOKED:
        return ClipStanding(ClipState.REVOKED, "its voice's consent was revoked" if e.revoked else "")
    if e.claimed is not ClipState.RELEASED:
        return ClipStanding(e.claimed, "")
    missing = [what for what, ok in (("its text approvals", e.text_complete), ("its audio sign-off", e.audio_complete))
               if not ok]
    if e.consent_problem:
        missing.append(f"a consent record that verifies ({e.consent_problem})")
    if missing:
        return ClipStanding(ClipState.DRAFT, f"clip {e.clip_id} is marked released, but the signed records lack "
                                             f"{' and '.join(missing)}")
    return ClipStanding(ClipState.RELEASED, "")
