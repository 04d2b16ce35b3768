"""Who held which key, and who was disabled, by the audit chain's order.

The audit log is the record: `voxgate.user.added` and `voxgate.user.key_rotated`
carry the public key registered, `voxgate.user.disabled` ends a person's
right to act. A key is valid from the event that registered it until the one
that replaced it, a passkey from `voxgate.passkey.registered` until the
`voxgate.passkey.disabled` event that names it; "after" always means a later
sequence number, never a time a signer chose. (`user_keys` holds the same history for listing.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.identity.personal import fingerprint
from pipeline.store.models import AuditRow

USER_ADDED: Final = "voxgate.user.added"
KEY_ROTATED: Final = "voxgate.user.key_rotated"
USER_DISABLED: Final = "voxgate.user.disabled"
PASSKEY_REGISTERED: Final = "voxgate.passkey.registered"
PASSKEYS_DISABLED: Final = "voxgate.passkey.disabled"


@dataclass(frozen=True)
class HeldKey:
    public_key: bytes
    fingerprint: str
    from_seq: int
    until_seq: int | None  # None: still the person's key

    def valid_at(self, seq: int) -> bool:
        return self.from_seq <= seq and (self.until_seq is None or seq < self.until_seq)


@dataclass(frozen=True)
class HeldPasskey:
    """A passkey a person registered in the portal: valid from its registration event until it was disabled."""

    id: int
    user: str
    public_key_sha256: str
    from_seq: int
    until_seq: int | None  # None: still live

    def valid_at(self, seq: int) -> bool:
        return self.from_seq <= seq and (self.until_seq is None or seq < self.until_seq)


@dataclass(frozen=True)
class People:
    """Every person's key history and the seq of their disable event (if any), read from the audit log."""

    keys: dict[str, tuple[HeldKey, ...]]
    disabled_seq: dict[str, int]
    passkeys: dict[int, HeldPasskey] = field(default_factory=dict)

    def passkey_at(self, name: str, passkey_id: int, public_key: bytes, seq: int) -> HeldPasskey | None:
        """The passkey `passkey_id` with this COSE public key, if `name` registered it and it was live at `seq`."""
        held = self.passkeys.get(passkey_id)
        ok = (held is not None and held.user == name and held.valid_at(seq)
              and held.public_key_sha256 == hashlib.sha256(public_key).hexdigest())
        return held if ok else None

    def key_at(self, name: str, fp: str, seq: int) -> HeldKey | None:
        """The key with fingerprint `fp` if `name` held it at event `seq`."""
        return next((k for k in self.keys.get(name, ()) if k.fingerprint == fp and k.valid_at(seq)), None)

    def first_key(self, name: str) -> HeldKey | None:
        held = self.keys.get(name, ())
        return held[0] if held else None

    def current_key(self, name: str) -> HeldKey | None:
        held = self.keys.get(name, ())
        return held[-1] if held and held[-1].until_seq is None else None

    def active_at(self, name: str, seq: int) -> bool:
        """False from the person's disable event on."""
        cut = self.disabled_seq.get(name)
        return cut is None or seq < cut


def people(s: Session) -> People:
    rows = s.scalars(select(AuditRow).where(AuditRow.action.in_(
        (USER_ADDED, KEY_ROTATED, USER_DISABLED, PASSKEY_REGISTERED, PASSKEYS_DISABLED))).order_by(AuditRow.seq))
    keys: dict[str, list[HeldKey]] = {}
    disabled: dict[str, int] = {}
    passkeys: dict[int, HeldPasskey] = {}
    for row in rows:
        if row.action == USER_DISABLED:
            disabled.setdefault(row.subject, row.seq)
            continue
        if row.action in (PASSKEY_REGISTERED, PASSKEYS_DISABLED):
            _passkey_event(passkeys, row)
            continue
        try:
            public = bytes.fromhex(str(row.data["public_key"]))
            fp = fingerprint(public)
        except (KeyError, TypeError, ValueError):
            continue  # an event without a readable key registers none
        held = keys.setdefault(row.subject, [])
        if held:
            last = held[-1]
            held[-1] = HeldKey(last.public_key, last.fingerprint, last.from_seq, row.seq)
        held.append(HeldKey(public, fp, row.seq, None))
    return People({name: tuple(held) for name, held in keys.items()}, disabled, passkeys)


def _passkey_event(passkeys: dict[int, HeldPasskey], row: AuditRow) -> None:
    data = row.data if isinstance(row.data, dict) else {}
    try:
        if row.action == PASSKEY_REGISTERED:
            pid = int(data["passkey"])
            if pid not in passkeys:  # a passkey is registered once
                passkeys[pid] = HeldPasskey(pid, row.subject, str(data["public_key_sha256"]), row.seq, None)
            return
        for pid in data.get("passkeys", ()):
            held = passkeys.get(int(pid))
            if held is not None and held.user == row.subject and held.until_seq is None:
                passkeys[held.id] = replace(held, until_seq=row.seq)
    except (KeyError, TypeError, ValueError):
        return  # an event without a readable passkey registers (or ends) none
