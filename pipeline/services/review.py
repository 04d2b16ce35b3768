"""Review: signed decisions on the text, the owner's approval, and audio sign-off leading to release.

Every decision is a signature over the v2 approval payload (`ApprovalPayload`:
workspace id, statement, revision number and hash, stage, decision, listened):
an Ed25519 signature by the reviewer's own CLI key, or in the portal a WebAuthn
assertion by the reviewer's passkey (kept to re-verify offline). Only decisions whose signature verifies
against the key the reviewer held at that point of the audit chain count, and
none made after the reviewer was disabled; a revision has a new number, so
earlier approvals stop counting (even when the words return to an earlier text).
Approvals stored before v2 keep verifying as v1 against the reviewer's first key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain import (
    Approval,
    ApprovalPayload,
    ClipEvent,
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
    review_stage,
    tally,
)
from pipeline.errors import ApprovalError, ConsentError, InputError, NotFoundError, StoreError, TransitionError
from pipeline.identity.history import People, people
from pipeline.identity.keys import verify
from pipeline.identity.passkeys import is_passkey_fingerprint, passkey_fingerprint
from pipeline.services import passkeys as passkey_service
from pipeline.services.passkeys import PasskeySignature, check_signature, store_assertion
from pipeline.services.statements import clip_transition, get_statement, supersede_drafts, to_domain, transition
from pipeline.services.voices import signed_consent
from pipeline.services.workspace import Actor, PasskeyProof, Workspace
from pipeline.store.models import ApprovalRow, AuditRow, ClipRow, PasskeyApprovalRow, StatementRow, UserRow

_TEXT_STATES = (State.SUBMITTED, State.IN_REVIEW)
_DECIDERS = (Role.REVIEWER, Role.OWNER, Role.DELEGATE)


def policy_of(ws: Workspace) -> ReviewPolicy:
    return ReviewPolicy(ws.config.review.text_reviewers, ws.config.review.audio_reviewers)


def approvals_of(s: Session, statement_id: int) -> list[Approval]:
    rows = list(s.scalars(select(ApprovalRow).where(ApprovalRow.statement_id == statement_id)
                          .order_by(ApprovalRow.id)))
    vouched: dict[int, str] = {}
    if any(is_passkey_fingerprint(r.key_fingerprint) for r in rows):
        by_passkey = passkey_service.vouchers(s)
        vouched = {p.approval_id: by_passkey[p.passkey_id] for p in s.scalars(select(PasskeyApprovalRow).where(
            PasskeyApprovalRow.approval_id.in_([r.id for r in rows]))) if p.passkey_id in by_passkey}
    return [Approval(r.statement_id, Stage(r.stage), r.subject_sha256, r.reviewer, Decision(r.decision), r.signature,
                     r.comment, version=r.payload_version or 1, revision=r.revision, listened=bool(r.listened),
                     key_fingerprint=r.key_fingerprint, seq=r.seq, vouched_by=vouched.get(r.id))
            for r in rows]


def recogniser_covers(ws: Workspace, language: str) -> bool:
    """Whether a speech recogniser checks the words of drafts in `language` (else reviewers must listen)."""
    from pipeline.quality.recognisers import recogniser_for

    return recogniser_for(language, ws.config.recognisers) is not None


def payload_of(workspace_id: str, a: Approval) -> bytes:
    """The exact bytes the approval's signer signed, in the version it was given."""
    if a.version == 1:
        return approval_payload(a.statement_id, a.stage, a.subject_hash, a.reviewer, a.decision)
    return v2_payload(workspace_id, a).to_bytes()


def v2_payload(workspace_id: str, a: Approval) -> ApprovalPayload:
    return ApprovalPayload(workspace_id, a.statement_id, a.revision or 0, a.stage, a.subject_hash, a.reviewer,
                           a.decision, a.listened)


def verifier(s: Session, ws: Workspace):  # noqa: ANN201 - a Verifier
    """A function that checks an approval against the key its signer held, by the audit chain's order.

    v2: the audit event at the approval's `seq` must be its own (the signature's
    hash recorded there), the signer must have held the signing key at that
    event and must not have been disabled before it. A passkey approval (its
    `key_fingerprint` names a passkey) counts only when its stored WebAuthn
    assertion verifies offline and that passkey was the signer's, live, at `seq`. v1 (stored before v2): the
    signer's first key, which was the only key anyone had then.
    """
    who: People = people(s)
    recorded = {row.seq: row for row in s.scalars(select(AuditRow).where(AuditRow.action.like("voxgate.review.%")))}
    workspace_id = ws.id_in(s)
    by_passkey = passkey_service.assertions(s)

    def _verify(a: Approval) -> bool:
        if a.version == 1:
            held = who.first_key(a.reviewer)
            return held is not None and verify(held.public_key, a.signature, payload_of(workspace_id, a))
        if a.seq is None or a.key_fingerprint is None or a.revision is None:
            return False
        event = recorded.get(a.seq)
        if (event is None or event.subject != str(a.statement_id) or event.actor != a.reviewer
                or event.data.get("signature_sha256") != _digest(a.signature)):
            return False
        if is_passkey_fingerprint(a.key_fingerprint):
            return passkey_service.approval_verifies(s, a, v2_payload(workspace_id, a), who, by_passkey)
        held = who.key_at(a.reviewer, a.key_fingerprint, a.seq)
        return (held is not None and who.active_at(a.reviewer, a.seq)
                and verify(held.public_key, a.signature, payload_of(workspace_id, a)))

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
    consent = signed_consent(s, ws, row.voice_id)
    if consent is None:
        raise ConsentError(f"Voice {row.voice_id!r} has no consent on file.")
    stage, subject = (Stage.TEXT, st.revision_hash) if clip is None else (Stage.AUDIO, clip.audio_sha256)
    req = requirement(stage, policy_of(ws), consent, recogniser_covers=recogniser_covers(ws, row.language))
    t = tally(approvals_of(s, row.id), statement=st, stage=stage, subject_hash=subject, req=req,
              verify=verifier(s, ws))
    return StageStatus(stage, subject, t)


def require_text_approved(s: Session, ws: Workspace, row: StatementRow, now: datetime) -> None:
    """The gate before any audio exists: consent valid now and every text approval in place (rule 1)."""
    check_consent(signed_consent(s, ws, row.voice_id), to_domain(row), now)
    status = stage_status(s, ws, row)
    if not status.tally.complete:
        raise ApprovalError(f"Statement {row.id} still needs {status.tally.missing()} of revision {row.revision}.")


def decide(ws: Workspace, statement_id: int, decision: Decision, *, comment: str = "", revision: int | None = None,
           listened: bool = False, actor: str | None, now: datetime,
           passkey: PasskeySignature | None = None) -> StatementRow:
    """Record one signed decision at the stage the statement is in, then move it if the policy is met.

    Signed with the actor's own CLI key (`ws.actor`), or in the portal with `passkey`: the browser's
    WebAuthn assertion over `ApprovalPayload(...).challenge(nonce)`, checked inside this transaction.
    Then the passkey, not a CLI key, proves who acts (`ws.passkey_actor`) for the events recorded.
    `listened`: the audio reviewer heard the whole draft; required to approve audio in a language
    no recogniser covers.
    """
    proof: PasskeyProof | None = None
    with ws.transaction() as s:
        # With a passkey, who acts is proven below by its assertion; here only their name and role are read.
        who = ws.actor(s, actor, *_DECIDERS) if passkey is None else ws.person(s, actor, *_DECIDERS)
        row = get_statement(s, statement_id)
        st = to_domain(row)
        if revision is not None and revision != row.revision:
            raise ApprovalError(
                f"You reviewed revision {revision}, but statement {row.id} is now at revision {row.revision}; "
                f"read it again (`voxgate review show {row.id}`) before deciding."
            )
        stage, subject, clip = _stage_of(ws, s, who, row, decision)
        if (stage is Stage.AUDIO and decision is Decision.APPROVE and not listened
                and not recogniser_covers(ws, row.language)):
            raise ApprovalError(
                f"No speech recogniser checked the words of statement {row.id}'s draft ({row.language!r}); "
                f"listen to the whole draft, then approve with `voxgate review approve {row.id} --listened`."
            )
        check_may_review(st, who.name, stage, approvals_of(s, row.id), subject, row.revision)
        if passkey is None:
            payload = ApprovalPayload(ws.id_in(s), row.id, row.revision, stage, subject, who.name, decision,
                                      listened=listened and stage is Stage.AUDIO)
            signature, key = who.sign(payload.to_bytes()), who.fingerprint
        else:
            payload = _passkey_payload(ws, s, row, stage, subject, who.name, decision, listened)
            used, nonce, signature = check_signature(s, passkey, payload, now)
            key = passkey_fingerprint(used.public_key)
            _check_bound_key(s, ws, row, stage, who.name, used.id)
        approval = ApprovalRow(statement_id=row.id, stage=stage.value, subject_sha256=subject, reviewer=who.name,
                               decision=decision.value, comment=comment, signature=signature, created_at=now,
                               payload_version=2, revision=row.revision, listened=payload.listened,
                               key_fingerprint=key)
        s.add(approval)
        s.flush()
        data = {"stage": stage.value, "revision": row.revision, "subject_sha256": subject,
                "payload_sha256": payload.sha256.hex(), "signature_sha256": _digest(signature), "key": key,
                "comment": comment}
        if passkey is not None:
            store_assertion(s, approval, used, payload, nonce, passkey)
            proof = PasskeyProof(used.id, approval.id)
            who = ws.passkey_actor(s, who.name, proof, *_DECIDERS)
            data |= {"passkey": used.id, "listened": payload.listened}
        event = ws.record(s, f"voxgate.review.{decision.value}", actor=who.name, subject=row.id, data=data, now=now)
        approval.seq = event.seq
        if decision is Decision.REJECT:
            transition(ws, s, row, Event.REJECTED, actor=who.name, now=now)
            supersede_drafts(ws, s, row.id, actor=who.name, now=now)
        elif decision is Decision.REQUEST_CHANGES:
            transition(ws, s, row, Event.CHANGES_REQUESTED, actor=who.name, now=now)
            supersede_drafts(ws, s, row.id, actor=who.name, now=now)
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
            return release(ws, statement_id, actor=actor, now=now, proof=proof)
        except (ConsentError, ApprovalError, StoreError) as exc:
            raise type(exc)(f"The audio is approved, but the release was refused: {exc}") from exc
    return row


def passkey_payload(ws: Workspace, statement_id: int, decision: Decision, *, listened: bool,
                    actor: str | None) -> ApprovalPayload:
    """What `actor` would sign with a passkey for `decision` now, refused early by the rules `decide` applies."""
    with ws.sessions() as s:
        who = ws.person(s, actor, *_DECIDERS)
        row = get_statement(s, statement_id)
        stage, subject, _ = _stage_of(ws, s, who, row, decision)
        check_may_review(to_domain(row), who.name, stage, approvals_of(s, row.id), subject, row.revision)
        return _passkey_payload(ws, s, row, stage, subject, who.name, decision, listened)


def _passkey_payload(ws: Workspace, s: Session, row: StatementRow, stage: Stage, subject: str, reviewer: str,
                     decision: Decision, listened: bool) -> ApprovalPayload:
    """The v2 payload a passkey signs; in the portal, audio is approved only after the whole draft was played."""
    if stage is Stage.AUDIO and decision is Decision.APPROVE and not listened:
        raise ApprovalError(f"Listen to statement {row.id}'s whole draft before approving its audio.")
    return ApprovalPayload(ws.id_in(s), row.id, row.revision, stage, subject, reviewer, decision,
                           listened=listened and stage is Stage.AUDIO)


def _check_bound_key(s: Session, ws: Workspace, row: StatementRow, stage: Stage, name: str, passkey_id: int) -> None:
    """At the owner stage a consent that binds `name`'s key counts only a passkey that key vouched for."""
    consent = signed_consent(s, ws, row.voice_id)
    bound = consent.bound_key(name) if consent is not None and stage is Stage.OWNER else None
    if bound is not None and passkey_service.vouchers(s).get(passkey_id) != bound:
        raise ApprovalError(
            f"Voice {row.voice_id!r}'s consent binds {name}'s approval to their own key ({bound}), and this passkey "
            f"was not registered from their own invitation; run `voxgate user invite {name} --as {name}` and "
            "register the passkey from that link.")


def _stage_of(ws: Workspace, s: Session, who: Actor | UserRow, row: StatementRow,
              decision: Decision) -> tuple[Stage, str, ClipRow | None]:
    """The stage `who` decides at now, its subject hash (the revision's, or the draft's audio) and the draft."""
    state = State(row.state)
    if state in _TEXT_STATES or state is State.DRAFT_READY:
        consent = signed_consent(s, ws, row.voice_id)
        if consent is None:
            raise ConsentError(f"Voice {row.voice_id!r} has no valid signed consent on file.")
        stage = review_stage(Role(who.role), audio=state is State.DRAFT_READY, name=who.name, consent=consent)
    elif state is State.TEXT_APPROVED and decision is Decision.APPROVE:
        raise ApprovalError(f"Statement {row.id}'s text is already approved; render it with `voxgate render {row.id}`.")
    else:
        raise TransitionError(f"Statement {row.id} is {state.value}; there is nothing to review at this point.")
    if stage is not Stage.AUDIO:
        return stage, to_domain(row).revision_hash, None
    clip = draft_clip(s, row.id)
    if clip is None:
        raise StoreError(f"Statement {row.id} is draft_ready but has no draft clip; render it again.")
    _check_audio_intact(ws, clip)
    return stage, clip.audio_sha256, clip


def release(ws: Workspace, statement_id: int, *, actor: str | None, now: datetime,
            proof: PasskeyProof | None = None) -> StatementRow:
    """Release an audio-approved statement after checking consent and every approval once more.

    `proof`: the release follows a passkey-signed audio approval in the portal; that passkey proves the actor.
    """
    with ws.transaction() as s:
        who = ws.actor(s, actor, *_DECIDERS) if proof is None else ws.passkey_actor(s, actor, proof, *_DECIDERS)
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
        clip_transition(ws, s, clip, ClipEvent.RELEASED, actor=who.name, now=now,
                        data={"audio_sha256": clip.audio_sha256})
        released_clip = clip.id
    from pipeline.services.copy_jobs import enqueue_release_copies

    enqueue_release_copies(ws, released_clip, now=now)  # queued, not waited for: a worker makes them
    return row


def _check_audio_intact(ws: Workspace, clip: ClipRow) -> None:
    """The master approved (or about to be) must be the very bytes that were rendered."""
    masters = [f for f in clip.files if f.format == "wav"]
    if not masters or masters[0].sha256 != clip.audio_sha256:
        raise StoreError(f"Clip {clip.id} has no intact WAV master; render the statement again.")
    ws.files.open_checked(clip.audio_sha256)


def _digest(signature: bytes) -> str:
    return hashlib.sha256(signature).hexdigest()


def pending(ws: Workspace, *, actor: str | None) -> list[StatementRow]:
    """Statements waiting for a decision that `actor` is allowed to give."""
    with ws.sessions() as s:
        who = ws.person(s, actor, Role.REVIEWER, Role.OWNER, Role.DELEGATE)
        states = [x.value for x in (*_TEXT_STATES, State.DRAFT_READY)]
        rows = s.scalars(select(StatementRow).where(StatementRow.state.in_(states)).order_by(StatementRow.id)).all()
        return [r for r in rows if who.name not in {rev.author for rev in r.revisions}]


def copy_draft(ws: Workspace, statement_id: int, out: Path) -> Path:
    """Copy the statement's draft master to `out/draft-<statement>.wav` so a reviewer can play it; checked by hash."""
    if not out.is_dir():
        raise InputError(f"{out} is not a folder; create it first or give another --out.")
    with ws.sessions() as s:
        clip = draft_clip(s, get_statement(s, statement_id).id, ("draft", "released", "revoked"))
        if clip is None or not clip.audio_sha256:
            raise NotFoundError(f"Statement {statement_id} has no rendered draft yet; render it first "
                                f"(`voxgate render {statement_id}`).")
        digest = clip.audio_sha256
    dest = out / f"draft-{statement_id}.wav"
    try:
        ws.files.export(digest, dest)  # checked against its hash
    except OSError as exc:
        raise StoreError(f"Could not copy the draft to {dest}: {exc.strerror}.") from exc
    return dest


def review_details(ws: Workspace, statement_id: int) -> dict:
    """What a reviewer needs: the text or draft under review, what is still missing, and every signed decision."""
    with ws.sessions() as s:
        row = get_statement(s, statement_id)
        verify_fn = verifier(s, ws)
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
            "recogniser": "checks the words" if recogniser_covers(ws, row.language) else (
                f"none covers {row.language!r}: the audio reviewer must listen to the whole draft and approve "
                f"with --listened"),
            "approvals": [
                {"stage": a.stage.value, "reviewer": a.reviewer, "decision": a.decision.value, "comment": a.comment,
                 "listened": a.listened,
                 "subject_sha256": a.subject_hash, "signature_valid": verify_fn(a),
                 "revision": a.revision, "payload_version": a.version, "key": a.key_fingerprint,
                 "current": (a.subject_hash in {row.revisions[-1].sha256, clip.audio_sha256 if clip else ""}
                             and a.revision in (None, row.revision))}
                for a in approvals_of(s, row.id)
            ],
        }
