"""People: users with a role and a registered public key (their private key stays with them).

Every change here is made by an admin proven by their own key, and audited:
add (with the person's public key), rotate-key (a new key; the old one keeps
verifying what it signed), disable (no further action or approval counts),
role change. `handover` moves the private keys an older workspace kept in
`keys/users/` out to their owners' key folder, encrypted, and deletes them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain.model import Role
from pipeline.errors import IdentityError, InputError, NotFoundError, PermissionError_
from pipeline.identity.history import KEY_ROTATED, USER_ADDED, USER_DISABLED, people
from pipeline.identity.keys import public_key_of
from pipeline.identity.personal import Passphrases, fingerprint, write_key
from pipeline.services.workspace import Workspace
from pipeline.store.models import AccessTokenRow, UserKeyRow, UserRow

_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InputError(f"Unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}.") from None


def _check_public(public_key: bytes) -> None:
    if len(public_key) != 32:
        raise InputError("A public key must be a 32-byte Ed25519 key; make one with `voxgate key init NAME`.")


def _key_in_use(s: Session, public_key: bytes) -> str | None:
    return s.scalars(select(UserKeyRow.user).where(UserKeyRow.public_key == public_key).limit(1)).first()


def add_user(ws: Workspace, name: str, role: str, *, public_key: bytes, actor: str | None, now: datetime) -> UserRow:
    """Register a person and their public key. The first user must be an admin; after that, admins add users."""
    if not _NAME.match(name):
        raise InputError(
            f"{name!r} is not a valid user name: use lower-case letters, digits, '.', '_' or '-', starting with a letter."
        )
    role_ = _role(role)
    _check_public(public_key)
    with ws.transaction() as s:
        first = s.scalars(select(UserRow).limit(1)).first() is None
        if first and role_ is not Role.ADMIN:
            raise InputError("The first user of a workspace must be an admin: `voxgate user add NAME --role admin`.")
        by = "system" if first else ws.actor(s, actor, Role.ADMIN).name
        if s.get(UserRow, name) is not None:
            raise InputError(f"A user named {name!r} already exists.")
        if (holder := _key_in_use(s, public_key)) is not None:
            raise InputError(f"That public key is already {holder}'s; every person needs their own key.")
        row = UserRow(name=name, role=role_.value, public_key=public_key, created_at=now)
        s.add(row)
        s.flush()
        event = ws.record(s, USER_ADDED, actor=by, subject=name,
                          data={"role": role_.value, "public_key": public_key.hex(),
                                "fingerprint": fingerprint(public_key)}, now=now)
        s.add(UserKeyRow(user=name, public_key=public_key, fingerprint=fingerprint(public_key), from_seq=event.seq,
                         until_seq=None, created_at=now))
    return row


def add_user_from_keys(ws: Workspace, name: str, role: str, *, actor: str | None, now: datetime,
                       new_passphrase: Callable[[str], bytes] | None = None) -> UserRow:
    """Register a person whose key is in this process's key folder (unlocked to prove it), creating it if absent.

    For a person at this machine (the demo, tests, a one-person team): only
    the public key reaches the workspace.
    """
    from pipeline.identity.personal import create_key, key_path

    if key_path(ws.keyring.folder, name).exists():
        public = public_key_of(ws.keyring.key(name))
    else:
        public = create_key(ws.keyring.folder, name, (new_passphrase or ws.keyring.passphrases)(name))
    return add_user(ws, name, role, public_key=public, actor=actor, now=now)


def _user(s: Session, name: str) -> UserRow:
    user = s.get(UserRow, name)
    if user is None:
        raise NotFoundError(f"No user named {name!r}; list users with `voxgate user list`.")
    return user


def rotate_key(ws: Workspace, name: str, public_key: bytes, *, reason: str = "", actor: str | None,
               now: datetime) -> UserRow:
    """Register a new key for `name` (key lost or replaced); what the old key signed still verifies against it."""
    _check_public(public_key)
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        user = _user(s, name)
        if name == who.name:
            raise InputError("An admin cannot register a new key for themselves; ask another admin.")
        if user.disabled_at is not None:
            raise PermissionError_(f"{name} is disabled; a disabled person gets no new key.")
        if (holder := _key_in_use(s, public_key)) is not None:
            raise InputError(f"That public key is already {holder}'s (now or before); make a new one with "
                             f"`voxgate key init {name}`.")
        old = user.public_key
        event = ws.record(s, KEY_ROTATED, actor=who.name, subject=name,
                          data={"public_key": public_key.hex(), "fingerprint": fingerprint(public_key),
                                "previous": fingerprint(old), "reason": reason.strip()}, now=now)
        for held in s.scalars(select(UserKeyRow).where(UserKeyRow.user == name, UserKeyRow.until_seq.is_(None))):
            held.until_seq = event.seq
        s.add(UserKeyRow(user=name, public_key=public_key, fingerprint=fingerprint(public_key), from_seq=event.seq,
                         until_seq=None, created_at=now))
        user.public_key = public_key
    return user


def disable_user(ws: Workspace, name: str, *, reason: str, actor: str | None, now: datetime) -> UserRow:
    """End a person's right to act: from this audit event on, nothing they sign counts (earlier approvals stay)."""
    if not reason.strip():
        raise InputError("Give the reason with --reason (it is kept in the audit log).")
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        user = _user(s, name)
        if user.disabled_at is not None or name in people(s).disabled_seq:
            raise InputError(f"{name} is already disabled.")
        if name == who.name:
            raise InputError("An admin cannot disable themselves; ask another admin.")
        user.disabled_at, user.disabled_reason = now, reason.strip()
        tokens = s.scalars(select(AccessTokenRow).where(AccessTokenRow.user == name,
                                                        AccessTokenRow.revoked_at.is_(None))).all()
        for token in tokens:
            token.revoked_at = now
        ws.record(s, USER_DISABLED, actor=who.name, subject=name,
                  data={"reason": reason.strip(), "tokens_revoked": len(tokens)}, now=now)
    return user


def set_role(ws: Workspace, name: str, role: str, *, actor: str | None, now: datetime) -> UserRow:
    role_ = _role(role)
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        user = _user(s, name)
        if user.role == role_.value:
            raise InputError(f"{name} is already a {role_.value}.")
        if name == who.name:
            raise InputError("An admin cannot change their own role; ask another admin.")
        before, user.role = user.role, role_.value
        ws.record(s, "voxgate.user.role_changed", actor=who.name, subject=name,
                  data={"from": before, "to": role_.value}, now=now)
    return user


def list_users(ws: Workspace) -> list[UserRow]:
    with ws.sessions() as s:
        return list(s.scalars(select(UserRow).order_by(UserRow.name)))


def key_history(ws: Workspace, name: str) -> list[UserKeyRow]:
    with ws.sessions() as s:
        _user(s, name)
        return list(s.scalars(select(UserKeyRow).where(UserKeyRow.user == name).order_by(UserKeyRow.from_seq)))


@dataclass(frozen=True)
class HandedOver:
    name: str
    path: Path
    fingerprint: str


def handover(ws: Workspace, dest: Path, passphrases: Passphrases, *, actor: str | None,
             now: datetime) -> list[HandedOver]:
    """Export every private key an older workspace holds (`keys/users/*.key`) encrypted into `dest`, then delete it.

    Each key is checked against its person's registered key first, written
    encrypted under that person's passphrase, read back, and only then removed
    from the workspace. The admin who runs it proves their key as usual; an
    admin whose own key is still in the workspace may be handed over in the same
    run (their old file unlocks them for this one command).
    """
    from cryptography.hazmat.primitives import serialization

    from pipeline.identity.personal import load_key

    folder = ws.legacy_keys_dir
    files = sorted(folder.glob("*.key")) if folder.is_dir() else []
    if not files:
        raise InputError(f"{folder} holds no private keys; nothing to hand over.")
    keys = {}
    for path in files:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, OSError):
            raise IdentityError(f"{path} is not an unencrypted private key; move it aside and run again.") from None
        keys[path.stem] = key
    with ws.sessions() as s:
        for name, key in keys.items():
            user = s.get(UserRow, name)
            if user is None or user.public_key != public_key_of(key):
                raise IdentityError(f"{folder / (name + '.key')} is not the registered key of a user {name!r}; "
                                    "move it aside and run again.")
    if actor in keys and not (ws.keyring.folder / f"{actor}.key").exists():
        ws.keyring._unlocked[actor] = keys[actor]  # noqa: SLF001 - the admin acts with the key being handed over
    done: list[HandedOver] = []
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        for name, key in keys.items():
            out = write_key(dest, name, key, passphrases(name))
            if public_key_of(load_key(dest, name, passphrases(name))) != public_key_of(key):
                raise IdentityError(f"{out} does not read back as {name}'s key; nothing was removed.")
            done.append(HandedOver(name, out, fingerprint(public_key_of(key))))
        ws.record(s, "voxgate.key.handed_over", actor=who.name, subject=str(dest),
                  data={"keys": {h.name: h.fingerprint for h in done}}, now=now)
    for path in files:
        os.remove(path)
    try:
        folder.rmdir()
    except OSError:
        pass
    return done
