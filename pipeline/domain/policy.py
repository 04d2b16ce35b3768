"""The rules that never bend, as pure functions.

`check_consent` is the consent gate that runs before every render and again
at release. `requirement` says which approvals a stage needs; `tally` counts
only approvals that verify, that sign the current subject, and that do not
come from an author of the statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.gates import ConsentStatus, consent_status
from pipeline.domain.model import (
    Approval,
    ApprovalPolicyKind,
    Consent,
    Decision,
    Requirement,
    ReviewPolicy,
    Role,
    Stage,
    Statement,
    VoiceState,
)
from pipeline.errors import ApprovalError, ConsentError, EngineError, InputError, PermissionError_

Verifier = Callable[[Approval], bool]


def check_consent_in_force(consent: Consent | None, voice_id: str, now: datetime) -> Consent:
    """The consent, or `ConsentError` if there is none, or it is revoked or outside its window now.

    What may be done in the voice at all (render, release, train on its recordings) hangs on this.
    """
    vid = voice_id
    if consent is None:
        raise ConsentError(f"Voice {vid!r} has no consent on file; add the voice with its consent record "
                           "(`voxgate voice add`) or enroll it (`voxgate voice enroll`) first.")
    status = consent_status(consent, now)
    if status is ConsentStatus.REVOKED:
        raise ConsentError(
            f"Consent for voice {vid!r} was revoked ({consent.revoked_reason or 'no reason given'}); "
            "nothing can be rendered or released in this voice without a new enrollment."
        )
    if status is ConsentStatus.NOT_YET_VALID:
        raise ConsentError(f"Consent for voice {vid!r} is not valid until {consent.valid_from:%Y-%m-%d}.")
    if status is ConsentStatus.EXPIRED:
        raise ConsentError(
            f"Consent for voice {vid!r} expired on {consent.valid_until:%Y-%m-%d}; the owner must renew it."
        )
    return consent


def check_consent(consent: Consent | None, statement: Statement, now: datetime) -> None:
    """Raise `ConsentError` unless consent is valid now and covers the statement."""
    consent = check_consent_in_force(consent, statement.voice_id, now)
    vid = statement.voice_id
    for what, value, allowed in (
        ("purpose", statement.purpose, consent.scope.purposes),
        ("channel", statement.channel, consent.scope.channels),
        ("language", statement.language, consent.scope.languages),
    ):
        if value not in allowed:
            raise ConsentError(
                f"The {what} {value!r} of statement {statement.id} is outside the consent for voice {vid!r} "
                f"(allowed: {', '.join(sorted(allowed))})."
            )


def check_voice_renders(voice_id: str, state: str) -> None:
    """Raise `EngineError` unless the voice is `ready`: an enrolled voice has no usable model yet."""
    if state == VoiceState.READY.value:
        return
    if state == VoiceState.REVOKED.value:
        raise ConsentError(f"Voice {voice_id!r} is revoked; nothing can be rendered in it without a new enrollment.")
    raise EngineError(
        f"Voice {voice_id!r} is {state}, not ready: it has no usable model yet. Train it on its enrolled "
        "recordings and mark it ready before rendering."
    )


@dataclass(frozen=True)
class ScopeChange:
    """What new consent terms allow beyond the old ones (`widened`) and what they take away (`narrowed`)."""

    widened: tuple[str, ...]
    narrowed: tuple[str, ...]

    @property
    def extends(self) -> bool:
        return bool(self.widened)


def compare_scope(old: Consent, new: Consent) -> ScopeChange:
    """Compare renewed terms with the record they renew; owner and organisation can never change."""
    for what, a, b in (("owner", old.owner, new.owner), ("organisation", old.organisation, new.organisation),
                       ("voice", old.voice_id, new.voice_id)):
        if a != b:
            raise InputError(f"A renewal cannot change the {what} ({a!r} → {b!r}); enroll the voice again instead.")
    widened: list[str] = []
    narrowed: list[str] = []
    for what, a, b in (("purposes", old.scope.purposes, new.scope.purposes),
                       ("channels", old.scope.channels, new.scope.channels),
                       ("languages", old.scope.languages, new.scope.languages),
                       ("approvers", old.approvers, new.approvers)):
        if b - a:
            widened.append(f"{what} + {', '.join(sorted(b - a))}")
        if a - b:
            narrowed.append(f"{what} - {', '.join(sorted(a - b))}")
    if new.valid_until > old.valid_until:
        widened.append(f"valid until {new.valid_until:%Y-%m-%d} (was {old.valid_until:%Y-%m-%d})")
    elif new.valid_until < old.valid_until:
        narrowed.append(f"valid until {new.valid_until:%Y-%m-%d} (was {old.valid_until:%Y-%m-%d})")
    if old.policy is not new.policy:
        change = f"policy {old.policy.value} → {new.policy.value}"
        (widened if new.policy is ApprovalPolicyKind.BLANKET else narrowed).append(change)
    return ScopeChange(tuple(widened), tuple(narrowed))


def requirement(stage: Stage, policy: ReviewPolicy, consent: Consent, *, recogniser_covers: bool = True) -> Requirement:
    """Which approvals `stage` needs under the workspace policy and the voice's consent.

    Where no recogniser covers the statement's language, nothing checked that the draft says the
    approved words, so an audio approval counts only if the reviewer confirmed they listened to all of it.
    """
    if stage is Stage.AUDIO:
        return Requirement(reviewers=policy.audio_reviewers, must_listen=not recogniser_covers)
    owners = consent.approvers if consent.policy is ApprovalPolicyKind.PER_STATEMENT else frozenset()
    keys = tuple((n, fp) for n, fp in consent.approver_keys if n in owners)
    return Requirement(reviewers=policy.text_reviewers, owner_approvers=owners, owner_keys=keys)


# --- who signs which stage -----------------------------------------------------------------------------------


def is_consent_approver(consent: Consent, name: str) -> bool:
    """The owner's account or a delegate the consent record names."""
    return name in consent.approvers


def review_stage(role: Role, *, audio: bool, name: str, consent: Consent) -> Stage:
    """The stage a person's decision counts for, or `PermissionError_`: the one place the roles of review live.

    Text phase: a reviewer (or admin) signs the text stage; the owner or a
    delegate signs the owner stage, and only if the consent names them.
    Audio phase: only a reviewer (or admin) signs the audio.
    """
    if audio:
        if role in (Role.REVIEWER, Role.ADMIN):
            return Stage.AUDIO
        raise PermissionError_(f"{name} is a {role.value}; audio sign-off needs a reviewer.")
    if role in (Role.OWNER, Role.DELEGATE):
        if not is_consent_approver(consent, name):
            raise PermissionError_(f"{name} is not the owner or a named delegate of voice {consent.voice_id!r}.")
        return Stage.OWNER
    if role in (Role.REVIEWER, Role.ADMIN):
        return Stage.TEXT
    raise PermissionError_(f"{name} is a {role.value}; reviewing needs a reviewer, the owner or a named delegate.")


def may_revoke(role: Role, name: str, consent: Consent) -> bool:
    """The owner or a named delegate may revoke a consent; so may an admin (revoking only ever takes away)."""
    return role is Role.ADMIN or is_consent_approver(consent, name)


@dataclass(frozen=True)
class Tally:
    reviewers: frozenset[str]
    owner_approved_by: frozenset[str]
    needed_reviewers: int
    needs_owner: bool
    vetoed_by: frozenset[str] = frozenset()  # signed rejections or requests for changes of this very subject
    must_listen: bool = False  # audio stage with no recogniser for the language: only `listened` approvals count

    @property
    def complete(self) -> bool:
        return (not self.vetoed_by and len(self.reviewers) >= self.needed_reviewers
                and (not self.needs_owner or bool(self.owner_approved_by)))

    def missing(self) -> str:
        """A human line of what is still needed; empty when complete."""
        parts = []
        if self.vetoed_by:
            parts.append(f"a new revision or render ({', '.join(sorted(self.vetoed_by))} rejected it or asked for changes)")
        if (short := self.needed_reviewers - len(self.reviewers)) > 0:
            listened = " from a reviewer who listened to the whole draft (`--listened`)" if self.must_listen else ""
            parts.append(f"{short} more reviewer approval{'s' if short > 1 else ''}{listened}")
        if self.needs_owner and not self.owner_approved_by:
            parts.append("the voice owner's (or a named delegate's) approval")
        return " and ".join(parts)


def tally(
    approvals: Iterable[Approval],
    *,
    statement: Statement,
    stage: Stage,
    subject_hash: str,
    req: Requirement,
    verify: Verifier,
) -> Tally:
    """Count the approvals that hold: signed, verified, of this revision, and not by an author.

    A v2 approval names the revision number it saw, so a text reverted to an
    earlier wording (A→B→A) is a new revision that needs new approvals. At the
    owner stage, where the consent record binds an approver's key, only an
    approval signed with that very key counts (a key swapped under the name does not),
    or with a passkey that key vouched for (`Approval.vouched_by`).
    `verify` checks the signature against the key the signer held at that point of the audit chain.
    A verified rejection or request for changes of this very subject vetoes the stage: deleting
    one from the store would otherwise revive the approvals given before it.
    """
    reviewer_stage = Stage.AUDIO if stage is Stage.AUDIO else Stage.TEXT
    stages = {reviewer_stage} if stage is Stage.AUDIO else {Stage.TEXT, Stage.OWNER}
    bound = dict(req.owner_keys)
    reviewers: set[str] = set()
    owners: set[str] = set()
    vetoes: set[str] = set()
    for a in approvals:
        if (a.statement_id == statement.id and a.decision is not Decision.APPROVE and a.subject_hash == subject_hash
                and (a.revision is None or a.revision == statement.revision)
                and a.stage in stages and a.reviewer not in statement.authors and verify(a)):
            vetoes.add(a.reviewer)
            continue
        if (
            a.statement_id != statement.id
            or a.decision is not Decision.APPROVE
            or a.subject_hash != subject_hash
            or (a.revision is not None and a.revision != statement.revision)
            or a.reviewer in statement.authors
            or not verify(a)
            or (a.stage is Stage.AUDIO and req.must_listen and not a.listened)
        ):
            continue
        if a.stage is reviewer_stage:
            reviewers.add(a.reviewer)
        elif (a.stage is Stage.OWNER and stage is not Stage.AUDIO and a.reviewer in req.owner_approvers
              and (a.reviewer not in bound or bound[a.reviewer] in (a.key_fingerprint, a.vouched_by))):
            owners.add(a.reviewer)
    return Tally(frozenset(reviewers), frozenset(owners), req.reviewers, bool(req.owner_approvers), frozenset(vetoes),
                 req.must_listen)


def check_may_review(statement: Statement, reviewer: str, stage: Stage, existing: Iterable[Approval], subject_hash: str,
                     revision: int | None = None) -> None:
    """Raise `ApprovalError` if `reviewer` may not decide on this subject (this revision) at this stage."""
    if reviewer in statement.authors:
        raise ApprovalError(
            f"{reviewer} submitted or revised statement {statement.id} and cannot review it; "
            "ask another reviewer."
        )
    for a in existing:
        if (a.reviewer == reviewer and a.stage is stage and a.subject_hash == subject_hash
                and (revision is None or a.revision in (None, revision))):
            raise ApprovalError(
                f"{reviewer} already recorded '{a.decision.value}' on this {stage.value} stage of "
                f"statement {statement.id}; a second decision by the same person does not count."
            )
