"""The append-only audit log: every event hash-chained to the one before and signed.

Each event's hash covers its sequence number, time, actor, action, subject,
data and the previous event's hash; the organisation key signs that hash.
The signed head (`pipeline.audit.head`) records the last sequence number and
hash, so removing events from the end is detected too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain.model import canonical_json
from pipeline.identity.keys import sign, verify
from pipeline.store.db import lock_for_append
from pipeline.store.models import AuditRow

GENESIS: Final = "0" * 64


def event_hash(seq: int, at: datetime, actor: str, action: str, subject: str, data: dict[str, Any], prev: str) -> str:
    body = canonical_json(
        {"seq": seq, "at": at.isoformat(), "actor": actor, "action": action, "subject": subject, "data": data, "prev": prev}
    )
    return hashlib.sha256(body).hexdigest()


def record(
    session: Session,
    key: Ed25519PrivateKey,
    action: str,
    *,
    actor: str,
    subject: str,
    data: dict[str, Any] | None = None,
    now: datetime,
) -> AuditRow:
    """Append one event inside the caller's transaction (so it commits with the change it records).

    Appends are serialised by the store's write lock, held from here to the
    commit, so concurrent writers (processes, machines) extend one chain:
    no fork, no duplicate sequence number, no gap.
    """
    lock_for_append(session)
    last = session.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    data = json.loads(canonical_json(data or {}))  # what the database will hand back
    h = event_hash(seq, now, actor, action, subject, data, prev)
    row = AuditRow(
        seq=seq, at=now, actor=actor, action=action, subject=subject, data=data,
        prev_hash=prev, hash=h, signature=sign(key, bytes.fromhex(h)),
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events: int
    problem: str = ""
    first_bad_seq: int | None = None
    last_hash: str = ""


RawEvent = tuple[Any, Any, Any, Any, Any, Any, Any, Any, Any]
"""(seq, at, actor, action, subject, data, prev_hash, hash, signature) as the database holds them: text, unparsed,
so a tampered row is reported rather than crashing the reader."""


def _parse(raw: RawEvent) -> tuple[int, datetime, str, str, str, dict[str, Any], str, str, bytes]:
    seq, at, actor, action, subject, data, prev, h, sig = raw
    at = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    data = data if isinstance(data, dict) else json.loads(data)
    if not isinstance(data, dict):
        raise ValueError("its data is not a JSON object")
    return int(seq), at, str(actor), str(action), str(subject), data, str(prev), str(h), bytes(sig)


def verify_chain(rows: Iterable[RawEvent], org_public_key: bytes) -> ChainReport:
    """Walk the chain in order; report the first event altered, unreadable, removed or reordered."""
    prev, expected, count = GENESIS, 1, 0
    for raw in rows:
        count += 1
        try:
            seq, at, actor, action, subject, data, prev_hash, h, sig = _parse(raw)
        except (TypeError, ValueError) as exc:
            return ChainReport(False, count, f"event {raw[0]} is unreadable (altered after it was written: {exc})",
                               expected)
        if seq != expected:
            return ChainReport(False, count, f"event {expected} is missing or out of order (found {seq})", expected)
        if prev_hash != prev:
            return ChainReport(False, count, f"event {seq} does not follow event {seq - 1} (chain broken)", seq)
        if event_hash(seq, at, actor, action, subject, data, prev_hash) != h:
            return ChainReport(False, count, f"event {seq} ({action}) was altered after it was written", seq)
        if not verify(org_public_key, sig, bytes.fromhex(h)):
            return ChainReport(False, count, f"event {seq} ({action}) carries an invalid signature", seq)
        prev, expected = h, expected + 1
    return ChainReport(True, count, last_hash=prev if count else "")
