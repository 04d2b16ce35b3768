"""People: users with a role and an Ed25519 key pair each."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

from pipeline.domain.model import Role
from pipeline.errors import InputError
from pipeline.identity.keys import generate_key
from pipeline.services.workspace import Workspace
from pipeline.store.models import UserRow

_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


def add_user(ws: Workspace, name: str, role: str, *, actor: str | None, now: datetime) -> UserRow:
    """Create a user and their key. The first user of a workspace must be an admin; after that, admins add users."""
    if not _NAME.match(name):
        raise InputError(
            f"{name!r} is not a valid user name: use lower-case letters, digits, '.', '_' or '-', starting with a letter."
        )
    try:
        role_ = Role(role)
    except ValueError:
        raise InputError(f"Unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}.") from None
    with ws.transaction() as s:
        first = s.scalars(select(UserRow).limit(1)).first() is None
        if first and role_ is not Role.ADMIN:
            raise InputError(f"The first user of a workspace must be an admin: `voxgate user add NAME --role admin`.")
        by = "system" if first else ws.actor(s, actor, Role.ADMIN).name
        if s.get(UserRow, name) is not None:
            raise InputError(f"A user named {name!r} already exists.")
        key_path = ws.user_key_path(name)
        public = generate_key(key_path)
        try:
            row = UserRow(name=name, role=role_.value, public_key=public, created_at=now)
            s.add(row)
            ws.record(s, "voxgate.user.added", actor=by, subject=name,
                      data={"role": role_.value, "public_key": public.hex()}, now=now)
            s.flush()
        except BaseException:
            key_path.unlink(missing_ok=True)  # the store refused the user: leave no orphan key
            raise
    return row


def list_users(ws: Workspace) -> list[UserRow]:
    with ws.sessions() as s:
        return list(s.scalars(select(UserRow).order_by(UserRow.name)))
