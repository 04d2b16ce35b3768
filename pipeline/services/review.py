"""Review: signed decisions on the text, the owner's approval, and audio sign-off leading to release.

Every decision is an Ed25519 signature by the reviewer over the statement id,
the exact revision (or audio) hash, the stage and the decision. Only
decisions whose signature verifies against the reviewer's stored public key
count; a revision changes the hash, so earlier approvals stop counting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain import (
    Approval,
    ApprovalPayload,
    Decision,
    Event,
    ReviewPolicy,
    Role,
    Stage,
    State,
    Tally,
    approval_payload,
    check_consent,
    check_may_review,
    requirement,
    tally,
)
from pipeline.errors import ApprovalError, ConsentError, PermissionError_, StoreError, TransitionError
from pipeline.identity.keys import load_key, sign, verify
from pipeline.services.passkeys import (
    PasskeySignature,
    check_signature,
    passkey_verifier,
    store_assertion,
    workspace_id,
)
from pipeline.services.statements import get_statement, to_domain, transition
from pipeline.services.voices import consent_of, current_consent
from pipeline.services.workspace import Workspace
from pipeline.store.models import ApprovalRow, ClipRow, StatementRow, UserRow

_TEXT_STATES = (State.SUBMITTED, State.IN_REVIEW)


def policy_of(ws: Workspace) -> ReviewPolicy:
    return ReviewPolicy(ws.config.review.text_reviewers, ws.config.review.audio_reviewers)


def approvals_of(s: Session, statement_id: int) -> list[Approval]:
    rows = s.scalars(select(ApprovalRow).where(ApprovalRow.statement_id == statement_id).order_by(ApprovalRow.id))
    return [Approval(r.statement_id, Stage(r.stage), r.subject_sha256, r.reviewer, Decision(r.decision), r.signature, r.comment)
            for r in rows]


def verifier(s: Session):  # noqa: ANN201 - a Verifier
    """A function that checks an approval's signature: a passkey approval by its stored WebAuthn
    assertion (pipeline.identity.passkeys), any other against the reviewer's stored public key."""
    keys = {u.name: u.public_key for u in s.scalars(select(UserRow))}
    by_passkey = passkey_verifier(s)

    def _verify(a: Approval) -> bool:
        if (checked := by_passkey(a)) is not None:
            return checked
        key = keys.get(a.reviewer)
        payload = approval_payload(a.statement_id, a.stage, a.subject_hash, a.reviewer, a.decision)
        return key is not None and verify(key, a.signature, payload)

    return _verify


def draft_clip(s: Session, statement_id: int, states: tuple[str, ...] = ("draft",)) -> ClipRow | None:
    """The newest clip of the statement in one of `states` (by default: the draft awaiting sign-off)."""
    return s.scalars(select(ClipRow).where(ClipRow.statement_id == statement_id, ClipRow.state.in_(states))
                     .order_by(ClipRow.id.desc()).limit(1)).first()


@dataclass(frozen=True)
class StageStatus:
    stage: Stage
    subject_hash: str
    tally: Tally


def stage_status(s: Session, ws: Workspace, row: StatementRow, clip: ClipRow | None = None) -> StageStatus:
    """Where the statement's approvals stand: the text stage, or with `clip`, the audio stage."""
    st = to_domain(row)
    consent = consent_of(current_consent(s, row.voice_id))
    if consent is None:
        raise ConsentError(f"Voice {row.voice_id!r} has no consent on file.")
    stage, subject = (Stage.TEXT, st.revision_hash) if clip is None else (Stage.AUDIO, clip.audio_sha256)
    req = requirement(stage, policy_of(ws), consent)
    t = tally(approvals_of(s, row.id), statement=st, stage=stage, subject_hash=subject, req=req, verify=verifier(s))
    return StageStatus(stage, subject, t)


def require_text_approved(s: Session, ws: Workspace, row: StatementRow, now: datetime) -> None:
    """The gate before any audio exists: consent valid now and every text approval in place (rule 1)."""
    check_consent(consent_of(current_consent(s, row.voice_id)), to_domain(row), now)
    status = stage_status(s, ws, row)
    if not status.tally.complete:
        raise ApprovalError(f"Statement {row.id} still needs {status.tally.missing()} of revision {row.revision}.")


def decide(ws: Workspace, statement_id: int, decision: Decision, *, comment: str = "", revision: int | None = None,
           actor: str | None, now: datetime, passkey: PasskeySignature | None = None,
           listened: bool = False) -> StatementRow:
    """Record one signed decision at the stage the statement is in, then move it if the policy is met.

    Signed with the actor's CLI key, or with `passkey`: the browser's WebAuthn assertion over
    `ApprovalPayload(...).challenge(nonce)`, checked here inside the same transaction.
    """
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.REVIEWER, Role.OWNER, Role.DELEGATE)
        row = get_statement(s, statement_id)
        st = to_domain(row)
        if revision is not None and revision != row.revision:
            raise ApprovalError(
                f"You reviewed revision {revision}, but statement {row.id} is now at revision {row.revision}; "
                f"read it again (`voxgate review show {row.id}`) before deciding."
            )
        stage, subject, clip = _stage_of(ws, s, who, row, decision)
        check_may_review(st, who.name, stage, approvals_of(s, row.id), subject)
        if passkey is None:
            key = load_key(ws.user_key_path(who.name))
            signature = sign(key, approval_payload(row.id, stage, subject, who.name, decision))
        else:
            payload = _passkey_payload(s, row, stage, subject, who.name, decision, listened)
            used, nonce, signature = check_signature(s, passkey, payload, now)
        approval = ApprovalRow(statement_id=row.id, stage=stage.value, subject_sha256=subject, reviewer=who.name,
                               decision=decision.value, comment=comment, signature=signature, created_at=now)
        s.add(approval)
        s.flush()
        data = {"stage": stage.value, "subject_sha256": subject, "signature_sha256": _digest(signature),
                "comment": comment}
        if passkey is not None:
            store_assertion(s, approval, used, payload, nonce, passkey)
            data |= {"passkey": used.id, "revision": row.revision, "listened": listened}
        ws.record(s, f"voxgate.review.{decision.value}", actor=who.name, subject=row.id, data=data, now=now)
        if decision is Decision.REJECT:
            transition(ws, s, row, Event.REJECTED, actor=who.name, now=now)
            _drop_draft(s, row.id)
        elif decision is Decision.REQUEST_CHANGES:
            transition(ws, s, row, Event.CHANGES_REQUESTED, actor=who.name, now=now)
            _drop_draft(s, row.id)
        elif stage is Stage.AUDIO:
            status = stage_status(s, ws, row, clip)
            if status.tally.complete:
                transition(ws, s, row, Event.AUDIO_APPROVED, actor=who.name, now=now)
            else:
                transition(ws, s, row, Event.AUDIO_REVIEWED, actor=who.name, now=now)
        else:
            done = stage_status(s, ws, row).tally.complete
            transition(ws, s, row, Event.TEXT_APPROVED if done else Event.REVIEW_STARTED, actor=who.name, now=now)
    if State(row.state) is State.AUDIO_APPROVED:
        try:
            return release(ws, statement_id, actor=actor, now=now)
        except (ConsentError, ApprovalError, StoreError) as exc:
            raise type(exc)(f"The audio is approved, but the release was refused: {exc}") from exc
    return row


def passkey_payload(ws: Workspace, statement_id: int, decision: Decision, *, listened: bool,
                    actor: str | None) -> ApprovalPayload:
    """What `actor` would sign for `decision` now, refused early by the same rules `decide` applies."""
    with ws.sessions() as s:
        who = ws.actor(s, actor, Role.REVIEWER, Role.OWNER, Role.DELEGATE)
        row = get_statement(s, statement_id)
        stage, subject, _ = _stage_of(ws, s, who, row, decision)
        check_may_review(to_domain(row), who.name, stage, approvals_of(s, row.id), subject)
        return _passkey_payload(s, row, stage, subject, who.name, decision, listened)


def _passkey_payload(s: Session, row: StatementRow, stage: Stage, subject: str, reviewer: str, decision: Decision,
                     listened: bool) -> ApprovalPayload:
    if stage is Stage.AUDIO and decision is Decision.APPROVE and not listened:
        raise ApprovalError(f"Listen to statement {row.id}'s whole draft before approving its audio.")
    return ApprovalPayload(workspace_id(s), row.id, row.revision, stage, subject, reviewer, decision,
                           listened=listened and stage is Stage.AUDIO)


def _stage_of(ws: Workspace, s: Session, who: UserRow, row: StatementRow,
              decision: Decision) -> tuple[Stage, str, ClipRow | None]:
    """The stage `who` decides at now and its subject hash (the revision's, or the draft's audio)."""
    state = State(row.state)
    if state in _TEXT_STATES:
        if who.role in (Role.OWNER.value, Role.DELEGATE.value):
            consent = consent_of(current_consent(s, row.voice_id))
            if consent is None or who.name not in consent.approvers:
                raise PermissionError_(f"{who.name} is not the owner or a named delegate of voice {row.voice_id!r}.")
            return Stage.OWNER, to_domain(row).revision_hash, None
        return Stage.TEXT, to_domain(row).revision_hash, None
    if state is State.DRAFT_READY:
        if who.role not in (Role.REVIEWER.value, Role.ADMIN.value):
            raise PermissionError_(f"{who.name} is a {who.role}; audio sign-off needs a reviewer.")
        clip = draft_clip(s, row.id)
        if clip is None:
            raise StoreError(f"Statement {row.id} is draft_ready but has no draft clip; render it again.")
        _check_audio_intact(ws, clip)
        return Stage.AUDIO, clip.audio_sha256, clip
    if state is State.TEXT_APPROVED and decision is Decision.APPROVE:
        raise ApprovalError(f"Statement {row.id}'s text is already approved; render it with `voxgate render {row.id}`.")
    raise TransitionError(f"Statement {row.id} is {state.value}; there is nothing to review at this point.")


def release(ws: Workspace, statement_id: int, *, actor: str | None, now: datetime) -> StatementRow:
    """Release an audio-approved statement after checking consent and every approval once more."""
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.REVIEWER, Role.OWNER, Role.DELEGATE)
        row = get_statement(s, statement_id)
        if State(row.state) is not State.AUDIO_APPROVED:
            transition(ws, s, row, Event.RELEASED, actor=who.name, now=now)  # raises with the reason
        require_text_approved(s, ws, row, now)
        clip = draft_clip(s, row.id)
        if clip is None:
            raise StoreError(f"Statement {row.id} has no draft clip to release; render it again.")
        _check_audio_intact(ws, clip)
        status = stage_status(s, ws, row, clip)
        if not status.tally.complete:
            raise ApprovalError(f"Statement {row.id} still needs {status.tally.missing()} of its audio.")
        transition(ws, s, row, Event.RELEASED, actor=who.name, now=now, data={"clip": clip.id})
        clip.state, clip.released_at = "released", now
        ws.record(s, "voxgate.clip.released", actor=who.name, subject=clip.id,
                  data={"statement": row.id, "audio_sha256": clip.audio_sha256}, now=now)
    return row


def _check_audio_intact(ws: Workspace, clip: ClipRow) -> None:
    """The master approved (or about to be) must be the very bytes that were rendered."""
    masters = [f for f in clip.files if f.format == "wav"]
    if not masters or masters[0].sha256 != clip.audio_sha256:
        raise StoreError(f"Clip {clip.id} has no intact WAV master; render the statement again.")
    ws.files.open_checked(clip.audio_sha256)


def _drop_draft(s: Session, statement_id: int) -> None:
    if (clip := draft_clip(s, statement_id)) is not None:
        clip.state = "superseded"


def _digest(signature: bytes) -> str:
    return hashlib.sha256(signature).hexdigest()


def pending(ws: Workspace, *, actor: str | None) -> list[StatementRow]:
    """Statements waiting for a decision that `actor` is allowed to give."""
    with ws.sessions() as s:
        who = ws.actor(s, actor, Role.REVIEWER, Role.OWNER, Role.DELEGATE)
        states = [x.value for x in (*_TEXT_STATES, State.DRAFT_READY)]
        rows = s.scalars(select(StatementRow).where(StatementRow.state.in_(states)).order_by(StatementRow.id)).all()
        return [r for r in rows if who.name not in {rev.author for rev in r.revisions}]


def review_details(ws: Workspace, statement_id: int) -> dict:
    """What a reviewer needs: the text or draft under review, what is still missing, and every signed decision."""
    with ws.sessions() as s:
        row = get_statement(s, statement_id)
        verify_fn = verifier(s)
        state = State(row.state)
        clip = draft_clip(s, row.id, ("draft", "released", "revoked"))
        status = None
        if state in (State.DRAFT_READY, State.AUDIO_APPROVED) and clip is not None:
            status = stage_status(s, ws, row, clip)
        elif state in (*_TEXT_STATES, State.TEXT_APPROVED):
            status = stage_status(s, ws, row)
        return {
            "statement": row,
            "stage": status.stage.value if status else None,
            "missing": status.tally.missing() if status else "",
            "complete": status.tally.complete if status else None,
            "draft": clip,
            "draft_path": ws.files.path(clip.audio_sha256) if clip and clip.audio_sha256 else None,
            "approvals": [
                {"stage": a.stage.value, "reviewer": a.reviewer, "decision": a.decision.value, "comment": a.comment,
                 "subject_sha256": a.subject_hash, "signature_valid": verify_fn(a),
                 "current": a.subject_hash in {row.revisions[-1].sha256, clip.audio_sha256 if clip else ""}}
                for a in approvals_of(s, row.id)
            ],
        }
