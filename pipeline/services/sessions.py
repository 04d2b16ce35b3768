"""Portal sessions kept on the server: the cookie carries a random id, never the bearer token.

The store holds only the id's sha256. A session ends at logout (the old cookie stops working at
once), when it expires, and with what it was opened by: a revoked or expired access token, or a
disabled passkey.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select

from pipeline.domain import Role
from pipeline.errors import PermissionError_
from pipeline.services.workspace import Workspace
from pipeline.store.models import AccessTokenRow, PasskeyRow, PortalSessionRow, UserRow

SESSION_HOURS: Final = 12
_PREFIX: Final = "vxs_"


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def start_session(ws: Workspace, user: str, *, now: datetime, token: str | None = None,
                  passkey_id: int | None = None) -> str:
    """A new session for `user`, opened with an access token or a passkey; returns the cookie value."""
    if (token is None) == (passkey_id is None):
        raise ValueError("a session is opened by exactly one of an access token or a passkey")
    raw = _PREFIX + secrets.token_urlsafe(32)
    with ws.transaction() as s:
        s.add(PortalSessionRow(id_sha256=_digest(raw), user=user, token_sha256=_digest(token) if token else None,
                               passkey_id=passkey_id, created_at=now,
                               expires_at=now + timedelta(hours=SESSION_HOURS)))
        ws.record(s, "voxgate.portal.signed_in", actor=user, subject=user,
                  data={"with": "token" if token else "passkey"}, now=now)
    return raw


def session_user(ws: Workspace, raw: str | None, *, now: datetime, roles: tuple[Role, ...]) -> UserRow:
    """The user of a live session, if they hold one of `roles` (or admin); PermissionError_ otherwise."""
    if not raw or not raw.startswith(_PREFIX) or len(raw) > 100:
        raise PermissionError_("Sign in first.")
    with ws.sessions() as s:
        row = s.get(PortalSessionRow, _digest(raw))
        if row is None or row.ended_at is not None or now >= row.expires_at:
            raise PermissionError_("Your session ended; sign in again.")
        if row.token_sha256 is not None:
            token = s.scalars(select(AccessTokenRow).where(AccessTokenRow.token_sha256 == row.token_sha256)).first()
            if token is None or token.revoked_at is not None or now >= token.expires_at:
                raise PermissionError_("The access token this session was opened with is no longer valid.")
        if row.passkey_id is not None:
            passkey = s.get(PasskeyRow, row.passkey_id)
            if passkey is None or passkey.disabled_at is not None:
                raise PermissionError_("The passkey this session was opened with was disabled.")
        user = s.get(UserRow, row.user)
        if user is None or user.role not in {r.value for r in (*roles, Role.ADMIN)}:
            raise PermissionError_("This page is not for your role.")
        return user


def session_digest(raw: str | None) -> str | None:
    """The stored name of a session (for binding a challenge to it)."""
    return _digest(raw) if raw else None


def end_session(ws: Workspace, raw: str | None, *, now: datetime) -> None:
    """Log out: the session stops working at once, wherever its cookie was copied to."""
    if not raw:
        return
    with ws.transaction() as s:
        row = s.get(PortalSessionRow, _digest(raw))
        if row is not None and row.ended_at is None:
            row.ended_at = now
            ws.record(s, "voxgate.portal.signed_out", actor=row.user, subject=row.user, data={}, now=now)
