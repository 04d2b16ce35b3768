"""Consent renewal: a new signed record with a changed scope or end date; the old one stays as history.

    voxgate consent renew VOICE …    change the scope or end date with a new signed record
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime

from pipeline.consent.script import consent_script
from pipeline.domain import ApprovalPolicyKind, Consent, ConsentKind, Role, Scope, SignerCapacity, compare_scope
from pipeline.errors import ConsentError, InputError, NotFoundError, PermissionError_
from pipeline.services.consent_terms import (
    LANGUAGE,
    USER_NAME,
    VALUE,
    check_approvers,
    end_of_day,
    option_values,
)
from pipeline.services.voices import (
    add_consent_row,
    consent_of,
    consent_to_dict,
    current_consent,
    get_voice,
    signed_consent,
)
from pipeline.services.workspace import Workspace
from pipeline.store.models import ConsentRow


def renew_consent(ws: Workspace, voice_id: str, *, purposes: Sequence[str] | None = None,
                  channels: Sequence[str] | None = None, languages: Sequence[str] | None = None,
                  valid_until: date | None = None, policy: str | None = None, delegates: Sequence[str] | None = None,
                  actor: str | None, now: datetime) -> tuple[ConsentRow, tuple[str, ...], tuple[str, ...]]:
    """A new signed record with a wider or narrower scope; the old one stays as history.

    Narrowing (fewer purposes, channels, languages or delegates, an earlier end,
    per-statement approval) may be signed by the owner, a named delegate or an
    admin. Widening anything needs the owner's own signature: run it as the
    owner's account. Returns (new record, widened, narrowed).
    """
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.OWNER, Role.DELEGATE)
        voice = get_voice(s, voice_id)
        old_row = current_consent(s, voice_id)
        if old_row is None:
            raise NotFoundError(f"Voice {voice_id!r} has no consent to renew; enroll it (`voxgate consent script`).")
        in_force = signed_consent(s, ws, voice_id)
        if in_force is not None and in_force.revoked_at is not None:
            raise ConsentError(f"Consent for voice {voice_id!r} was revoked on {in_force.revoked_at:%Y-%m-%d}; a revoked "
                               f"consent cannot be renewed. Enroll again: `voxgate consent script {voice_id} …`.")
        old = consent_of(old_row)
        assert old is not None
        if who.role != Role.ADMIN.value and who.name not in old.approvers:
            raise PermissionError_(f"{who.name} is not the owner or a named delegate of voice {voice_id!r}.")
        scope = Scope(
            option_values(purposes, "purposes", VALUE) if purposes else old.scope.purposes,
            option_values(channels, "channels", VALUE) if channels else old.scope.channels,
            option_values(languages, "languages", LANGUAGE) if languages else old.scope.languages,
        )
        if not scope.languages <= set(voice.languages):
            raise InputError(f"Voice {voice_id!r} speaks {', '.join(voice.languages)}; the consent cannot cover "
                             f"{', '.join(sorted(scope.languages - set(voice.languages)))}.")
        if policy is not None:
            try:
                kind = ApprovalPolicyKind(policy)
            except ValueError:
                raise InputError(f"--policy must be blanket or per_statement, not {policy!r}.") from None
        else:
            kind = old.policy
        named = (option_values(delegates, "delegates", USER_NAME) if delegates else old.approvers - ({old.owner_account} if old.owner_account else frozenset()))
        approvers = check_approvers(s, old.owner_account, named)
        if kind is ApprovalPolicyKind.PER_STATEMENT and not approvers:
            raise InputError("A per_statement policy needs someone to approve: the owner's account or a delegate.")
        until = end_of_day(valid_until) if valid_until else old.valid_until
        if until <= now:
            raise InputError(f"--valid-until {until:%Y-%m-%d} is not in the future.")
        new = Consent(voice_id=voice_id, owner=old.owner, organisation=old.organisation, scope=scope, valid_from=now,
                      valid_until=until, policy=kind, approvers=approvers, owner_account=old.owner_account,
                      approver_keys=old.approver_keys)  # keys stay bound as the owner bound them
        change = compare_scope(old, new)
        if not change.widened and not change.narrowed:
            raise InputError("The renewal changes nothing; give the new --purposes, --channels, --languages, "
                             "--valid-until, --policy or --delegates.")
        if change.extends and who.name != old.owner_account:
            raise PermissionError_(
                f"Widening the consent ({'; '.join(change.widened)}) needs the owner's own signature: "
                + (f"run it as the owner's account (`--as {old.owner_account}`)" if old.owner_account else
                   "this consent names no owner account, so the owner must enroll again with a new consent script")
                + ". A delegate or an admin can only narrow it."
            )
        language = "en" if "en" in scope.languages else sorted(scope.languages)[0]
        new = replace(new, statement=consent_script(new, None, language))
        capacity = SignerCapacity.OWNER if who.name == old.owner_account else SignerCapacity.RENEWED_BY
        evidence = {"renews": old_row.record_sha256, "enrollment": old_row.enrollment_id,
                    "widened": list(change.widened), "narrowed": list(change.narrowed), "signed_by": who.name}
        row = add_consent_row(ws, s, new, ConsentKind.RENEWAL, evidence, signers=[(who, capacity)], now=now,
                              enrollment_id=old_row.enrollment_id, supersedes_id=old_row.id)
        ws.record(s, "voxgate.consent.renewed", actor=who.name, subject=voice_id, now=now, data={
            "consent_sha256": row.record_sha256, "renews": old_row.record_sha256, "widened": list(change.widened),
            "narrowed": list(change.narrowed), **consent_to_dict(new)})
    return row, change.widened, change.narrowed



__all__ = ["renew_consent"]
