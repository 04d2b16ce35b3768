"""What a clip's content credentials assert: the consent and the text approvals it was rendered under.

Shared by the render, which signs the clip's own files, and by every file made
later from the clip (videos, captions), which carry the same assertions.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select

from pipeline.domain import Decision
from pipeline.provenance.credentials import ClipProvenance, SignedApproval
from pipeline.services.review import approvals_of, verifier
from pipeline.services.workspace import Workspace
from pipeline.store.models import ClipRow, ConsentRow


def clip_provenance(ws: Workspace, clip_id: int, statement_id: int, *, voice: str, voice_name: str, language: str,
                    consent_sha256: str, revision_sha256: str, settings: dict[str, Any],
                    now: datetime) -> ClipProvenance:
    """The clip's provenance, with every verified text approval of its revision.

    Audio sign-off cannot be in the manifest: it is given on these very files,
    after they are signed. It is in the registry and the audit log.
    """
    with ws.sessions() as s:
        clip = s.get(ClipRow, clip_id)
        consent = s.scalars(select(ConsentRow).where(ConsentRow.voice_id == voice,
                                                     ConsentRow.record_sha256 == consent_sha256)
                            .order_by(ConsentRow.id.desc()).limit(1)).one()
        valid = verifier(s, ws)
        approvals = tuple(
            SignedApproval(a.reviewer, a.stage.value, a.decision.value, hashlib.sha256(a.signature).hexdigest())
            for a in approvals_of(s, statement_id)
            if a.subject_hash == revision_sha256 and a.decision is Decision.APPROVE and valid(a)
        )
    return ClipProvenance(
        clip_id=clip_id, organisation=ws.config.organisation, voice_id=voice, voice_name=voice_name,
        consent_id=consent.id, consent_sha256=consent_sha256, statement_id=statement_id,
        revision=clip.revision, revision_sha256=revision_sha256, language=language, created_at=now,
        approvals=approvals, settings=settings,
    )
