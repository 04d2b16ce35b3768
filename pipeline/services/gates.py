"""Read the signed records behind a clip and ask the domain whether it stands (`domain.gates.clip_standing`).

Every moment a clip is listed, handed over (export, download, personal copy)
or called authentic comes here: approvals with their signatures checked, the
consent record it was made under and its signatures, and the revocation
records, checked against the signed audit head. The clip's `state` column
is read only as a claim, which the records must support.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline import audit
from pipeline.domain import ClipEvidence, ClipStanding, ClipState, Stage, clip_standing, requirement, tally
from pipeline.errors import ConsentError, VoxgateError
from pipeline.services.review import approvals_of, policy_of, verifier
from pipeline.services.statements import to_domain
from pipeline.services.voices import binding_revocation, consent_of, current_consent, record_problem, revocations
from pipeline.services.workspace import Workspace
from pipeline.store.models import ClipRow, ConsentRow, StatementRow


def made_under(s: Session, clip: ClipRow) -> ConsentRow | None:
    """The consent record the clip was rendered under (the voice's current one for a clip that never finished)."""
    row = s.scalars(select(ConsentRow).where(ConsentRow.voice_id == clip.voice_id,
                                             ConsentRow.record_sha256 == (clip.settings or {}).get("consent_sha256"))
                    .order_by(ConsentRow.id.desc()).limit(1)).first()
    return row or current_consent(s, clip.voice_id, verified=False)


def standing(s: Session, ws: Workspace, clip: ClipRow) -> ClipStanding:
    """What the signed records say the clip is, whatever its state column claims."""
    try:
        claimed = ClipState(clip.state)
    except ValueError:
        return ClipStanding(ClipState.FAILED, f"clip {clip.id} has an unknown state {clip.state!r}")
    consent_row = made_under(s, clip)
    problem = audit.commitment_problem(s, ws.org_public_key)
    if problem is None:
        problem = "there is none" if consent_row is None else record_problem(s, consent_row)
    current = current_consent(s, clip.voice_id, verified=False)
    revoked = (binding_revocation(s, clip.voice_id, clip.model_sha256, consent_row, revocations(s)) is not None
               or any(r is not None and r.revoked_at is not None for r in (consent_row, current)))
    text_ok = audio_ok = False
    consent = consent_of(consent_row)
    statement = s.get(StatementRow, clip.statement_id)
    if consent is not None and statement is not None and clip.audio_sha256:
        st, policy, verify = to_domain(statement), policy_of(ws), verifier(s, ws)
        approvals = approvals_of(s, statement.id)
        text_ok = tally(approvals, statement=st, stage=Stage.TEXT, subject_hash=clip.revision_sha256,
                        req=requirement(Stage.TEXT, policy, consent), verify=verify).complete
        audio_ok = tally(approvals, statement=st, stage=Stage.AUDIO, subject_hash=clip.audio_sha256,
                         req=requirement(Stage.AUDIO, policy, consent), verify=verify).complete
    return clip_standing(ClipEvidence(clip.id, claimed, text_ok, audio_ok, revoked, problem))


def released_standing(s: Session, ws: Workspace, clip: ClipRow) -> bool:
    """Whether the clip may be listed as released (revoked, unsupported and unreadable ones are left out)."""
    try:
        return standing(s, ws, clip).released
    except VoxgateError:
        return False


def require_released(s: Session, ws: Workspace, clip: ClipRow) -> None:
    """`ConsentError` unless the signed records show the clip released and not revoked."""
    found = standing(s, ws, clip)
    if found.state is ClipState.REVOKED:
        raise ConsentError(f"Clip {clip.id} was revoked with its voice's consent; it must not be distributed.")
    if not found.released:
        reason = f" ({found.reason})" if found.reason else ""
        raise ConsentError(f"Clip {clip.id} is not a released clip{reason}; only released clips can be handed out.")
