"""Access tokens for distributors: issued once, stored only as a sha256, checked on every request."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select

from pipeline.domain import Role
from pipeline.errors import InputError, PermissionError_
from pipeline.services.workspace import Workspace
from pipeline.store.models import AccessTokenRow, UserRow

DEFAULT_TOKEN_DAYS: Final = 30
_PREFIX: Final = "vxg_"


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_token(ws: Workspace, name: str, *, days: int = DEFAULT_TOKEN_DAYS, actor: str | None, now: datetime) -> str:
    """A new random token for `name`; the raw value is shown once and never stored."""
    if not 1 <= days <= 366:
        raise InputError("A token lives between 1 and 366 days; pass --days N.")
    raw = _PREFIX + secrets.token_urlsafe(32)
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        user = s.get(UserRow, name)
        if user is None:
            raise InputError(f"No user named {name!r}; add them first with `voxgate user add`.")
        s.add(AccessTokenRow(user=name, token_sha256=token_hash(raw), created_at=now,
                             expires_at=now + timedelta(days=days)))
        ws.record(s, "voxgate.token.issued", actor=who.name, subject=name, data={"days": days}, now=now)
    return raw


def authenticate(ws: Workspace, raw: str | None, *, now: datetime, roles: tuple[Role, ...] = (Role.DISTRIBUTOR,)) -> UserRow:
    """The user a token belongs to, if it is known, unexpired, unrevoked and the user has one of `roles`."""
    if not raw or not raw.startswith(_PREFIX) or len(raw) > 200:
        raise PermissionError_("Missing or malformed access token; ask an admin for one (`voxgate user token NAME`).")
    with ws.sessions() as s:
        row = s.scalars(select(AccessTokenRow).where(AccessTokenRow.token_sha256 == token_hash(raw))).first()
        if row is None or row.revoked_at is not None:
            raise PermissionError_("Unknown or revoked access token.")
        if now >= row.expires_at:
            raise PermissionError_(f"This access token expired on {row.expires_at:%Y-%m-%d}; ask an admin for a new one.")
        user = s.get(UserRow, row.user)
        if user is None or user.role not in {r.value for r in (*roles, Role.ADMIN)}:
            raise PermissionError_("This token's user may not use the distributor portal.")
        return user


def revoke_tokens(ws: Workspace, name: str, *, reason: str, actor: str | None, now: datetime) -> int:
    """Revoke every live token of `name` at once (a leak was traced to them, or they left); returns how many."""
    if not reason.strip():
        raise InputError("Say why with --reason; it goes into the audit log.")
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        if s.get(UserRow, name) is None:
            raise InputError(f"No user named {name!r}; see `voxgate user list`.")
        live = list(s.scalars(select(AccessTokenRow).where(AccessTokenRow.user == name,
                                                           AccessTokenRow.revoked_at.is_(None))))
        for row in live:
            row.revoked_at = now
        ws.record(s, "voxgate.token.revoked", actor=who.name, subject=name,
                  data={"tokens": len(live), "reason": reason.strip()}, now=now)
    return len(live)
