"""The consent script: print-ready text with a fresh challenge phrase, kept as a pending enrollment.

    voxgate consent script VOICE …   print the script (with a fresh challenge phrase); store it as pending

`voice enroll` (`pipeline.services.enrollment`) then checks the owner's reading of it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.consent.script import (
    CHALLENGE_WORD_COUNT,
    SCRIPT_LANGUAGES,
    base_language,
    challenge_phrase,
    consent_script,
)
from pipeline.domain import ApprovalPolicyKind, Consent, Role, Scope
from pipeline.errors import ConsentError, InputError, NotFoundError, StoreError
from pipeline.services.consent_terms import (
    LANGUAGE,
    USER_NAME,
    VALUE,
    check_approvers,
    end_of_day,
    option_values,
    require_same_owner,
)
from pipeline.services.voices import _ID
from pipeline.services.workspace import Workspace
from pipeline.store.models import ConsentScriptRow, VoiceRow

MAX_SCRIPT_AGE: Final = timedelta(days=30)
"""A printed script must be read and enrolled within this time; after it, print a new one (a fresh challenge)."""


def create_script(ws: Workspace, voice_id: str, *, owner: str, organisation: str, purposes: Sequence[str],
                  channels: Sequence[str], languages: Sequence[str], valid_until: date,
                  policy: str = ApprovalPolicyKind.BLANKET.value, delegates: Sequence[str] = (),
                  owner_account: str | None = None, language: str | None = None, actor: str | None, now: datetime,
                  rng: random.Random | None = None) -> ConsentScriptRow:
    """Print-ready consent script with a fresh, never-used challenge phrase, stored as a pending enrollment."""
    if not _ID.match(voice_id):
        raise InputError(f"Voice id {voice_id!r} must be lower-case letters, digits, '_' or '-'.")
    if not owner.strip():
        raise InputError("Give the owner's full name with --owner, as they will say it.")
    if organisation != ws.config.organisation:
        raise InputError(f"The consent must name this workspace's organisation, {ws.config.organisation!r}, "
                         f"not {organisation!r}; a voice can only be used by the organisation its owner consented to.")
    try:
        kind = ApprovalPolicyKind(policy)
    except ValueError:
        raise InputError(f"--policy must be blanket or per_statement, not {policy!r}.") from None
    scope = Scope(option_values(purposes, "purposes", VALUE), option_values(channels, "channels", VALUE),
                  option_values(languages, "languages", LANGUAGE))
    if valid_until <= now.date():
        raise InputError(f"--valid-until {valid_until} is not in the future; give the last day the consent holds.")
    language = language or ("en" if "en" in scope.languages else sorted(scope.languages)[0])
    if language not in scope.languages:
        raise InputError(f"The script language {language!r} must be one of the consented languages "
                         f"({', '.join(sorted(scope.languages))}).")
    if base_language(language) not in SCRIPT_LANGUAGES:
        raise InputError(f"There is no consent script in {language!r} yet (available: "
                         f"{', '.join(sorted(SCRIPT_LANGUAGES))}); choose one of those with --language.")
    rng = rng or random.SystemRandom()
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        voice = s.get(VoiceRow, voice_id)
        if voice is not None and not scope.languages <= set(voice.languages):
            raise InputError(f"Voice {voice_id!r} speaks {', '.join(voice.languages)}; the consent cannot cover "
                             f"{', '.join(sorted(scope.languages - set(voice.languages)))}.")
        require_same_owner(s, voice_id, " ".join(owner.split()))
        approvers = check_approvers(s, owner_account, option_values(delegates, "delegates", USER_NAME) if delegates else frozenset())
        if kind is ApprovalPolicyKind.PER_STATEMENT and not approvers:
            raise InputError("A per_statement policy needs someone to approve: the owner's account "
                             "(--owner-account) or named delegates (--delegates).")
        used = set(s.scalars(select(ConsentScriptRow.challenge)))
        for _ in range(100):
            words = challenge_phrase(rng, language, CHALLENGE_WORD_COUNT)
            if " ".join(words) not in used:
                break
        else:  # pragma: no cover - about 10^7 phrases per language
            raise StoreError("Could not draw an unused challenge phrase; try again.")
        terms = Consent(voice_id=voice_id, owner=" ".join(owner.split()), organisation=organisation, scope=scope,
                        valid_from=now, valid_until=end_of_day(valid_until), policy=kind, approvers=approvers,
                        owner_account=owner_account)
        text = consent_script(terms, words, language)
        row = ConsentScriptRow(voice_id=voice_id, language=language, text=text, challenge=" ".join(words),
                               owner=terms.owner, owner_account=owner_account, organisation=organisation,
                               purposes=sorted(scope.purposes), channels=sorted(scope.channels),
                               languages=sorted(scope.languages), valid_until=terms.valid_until, policy=kind.value,
                               approvers=sorted(approvers), created_by=who.name, created_at=now)
        s.add(row)
        s.flush()
        ws.record(s, "voxgate.consent.script_created", actor=who.name, subject=voice_id,
                  data={"script": row.id, "language": language, "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
                        "challenge": row.challenge}, now=now)
    return row


def script_terms(script: ConsentScriptRow, now: datetime) -> Consent:
    return Consent(voice_id=script.voice_id, owner=script.owner, organisation=script.organisation,
                   scope=Scope(frozenset(script.purposes), frozenset(script.channels), frozenset(script.languages)),
                   valid_from=now, valid_until=script.valid_until, policy=ApprovalPolicyKind(script.policy),
                   approvers=frozenset(script.approvers), statement=script.text, owner_account=script.owner_account)


def pending_script(s: Session, voice_id: str, script_id: int | None, now: datetime) -> ConsentScriptRow:
    if script_id is None:
        script = s.scalars(select(ConsentScriptRow).where(ConsentScriptRow.voice_id == voice_id,
                                                          ConsentScriptRow.used_at.is_(None))
                           .order_by(ConsentScriptRow.id.desc()).limit(1)).first()
        if script is None:
            raise NotFoundError(f"No pending consent script for voice {voice_id!r}; print one with "
                                f"`voxgate consent script {voice_id} …` and have the owner read it aloud.")
    else:
        script = s.get(ConsentScriptRow, script_id)
        if script is None or script.voice_id != voice_id:
            raise NotFoundError(f"No consent script {script_id} for voice {voice_id!r}.")
    if script.used_at is not None:
        raise ConsentError(f"Consent script {script.id} was already used on {script.used_at:%Y-%m-%d}; its challenge "
                           f"phrase cannot be used twice. Print a new one with `voxgate consent script {voice_id} …`.")
    if now - script.created_at > MAX_SCRIPT_AGE:
        raise ConsentError(f"Consent script {script.id} was printed on {script.created_at:%Y-%m-%d}, more than "
                           f"{MAX_SCRIPT_AGE.days} days ago; print a new one with a fresh challenge phrase.")
    if script.valid_until <= now:
        raise ConsentError(f"Consent script {script.id} ends on {script.valid_until:%Y-%m-%d}, which has passed; "
                           "print a new one.")
    return script



__all__ = ["MAX_SCRIPT_AGE", "create_script", "pending_script", "script_terms"]
