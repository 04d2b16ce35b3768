"""The terms a consent script or a renewal names, checked: purposes, channels, languages, approvers, owner.

Shared by `consent_scripts` (the first terms) and `consent_renewal` (changed terms),
so both refuse the same bad values with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, time as dtime, timezone
from typing import Final

from sqlalchemy.orm import Session

from pipeline.domain import Role
from pipeline.errors import InputError
from pipeline.services.voices import consent_history
from pipeline.store.models import UserRow

VALUE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LANGUAGE: Final = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
USER_NAME: Final = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


def option_values(raw: Sequence[str], what: str, pattern: re.Pattern[str]) -> frozenset[str]:
    """Comma-separated or repeated option values, checked."""
    items = {v.strip() for item in raw for v in item.split(",") if v.strip()}
    if not items:
        raise InputError(f"Give at least one of the {what} the owner consents to (--{what} a,b).")
    if bad := sorted(v for v in items if not pattern.match(v)):
        raise InputError(f"{what} {', '.join(map(repr, bad))}: use lower-case letters, digits, '-' or '_' "
                         "(languages as codes such as en or ur).")
    return frozenset(items)


def end_of_day(day: date) -> datetime:
    return datetime.combine(day, dtime.max, timezone.utc)


def check_approvers(s: Session, owner_account: str | None, delegates: frozenset[str]) -> frozenset[str]:
    if owner_account is not None:
        user = s.get(UserRow, owner_account)
        if user is None or user.role != Role.OWNER.value:
            raise InputError(f"The owner's account {owner_account!r} must be a user with the owner role; "
                             f"add it first (`voxgate user add {owner_account} --role owner`).")
    for name in sorted(delegates):
        user = s.get(UserRow, name)
        if user is None or user.role not in (Role.OWNER.value, Role.DELEGATE.value):
            raise InputError(f"Delegate {name!r} must be a user with the delegate role; add them first "
                             f"(`voxgate user add {name} --role delegate`).")
    return delegates | ({owner_account} if owner_account else frozenset())


def require_same_owner(s: Session, voice_id: str, owner: str) -> None:
    """A voice's owner never changes: its model and recordings are that person's voice."""
    owners = {h.owner for h in consent_history(s, voice_id)}
    if owners and owner not in owners:
        raise InputError(f"Voice {voice_id!r} belongs to {', '.join(sorted(owners))}; a voice's owner never changes. "
                         "Enroll the new owner under a new voice id.")

