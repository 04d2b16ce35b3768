"""The append-only audit log: every event hash-chained to the one before and signed.

Each event's hash covers its sequence number, time, actor, action, subject,
data and the previous event's hash; the organisation key signs that hash.
A signed head (the last sequence number and hash) is kept outside the
database as well, so removing events from the end is detected too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain.model import canonical_json
from pipeline.identity.keys import sign, verify
from pipeline.store.db import lock_for_append
from pipeline.store.files import atomic_output
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


def verify_chain(rows: Iterable[AuditRow], org_public_key: bytes, head: dict[str, Any] | None) -> ChainReport:
    """Walk the chain in order; report the first event altered, removed or reordered."""
    prev, expected, count = GENESIS, 1, 0
    hashes: dict[int, str] = {}
    for row in rows:
        count += 1
        if row.seq != expected:
            return ChainReport(False, count, f"event {expected} is missing or out of order (found {row.seq})", expected)
        if row.prev_hash != prev:
            return ChainReport(False, count, f"event {row.seq} does not follow event {row.seq - 1} (chain broken)", row.seq)
        h = event_hash(row.seq, row.at, row.actor, row.action, row.subject, row.data, row.prev_hash)
        if h != row.hash:
            return ChainReport(False, count, f"event {row.seq} ({row.action}) was altered after it was written", row.seq)
        if not verify(org_public_key, row.signature, bytes.fromhex(row.hash)):
            return ChainReport(False, count, f"event {row.seq} ({row.action}) carries an invalid signature", row.seq)
        hashes[row.seq] = row.hash
        prev, expected = row.hash, expected + 1
    if head is not None:
        hseq, hhash = int(head["seq"]), str(head["hash"])
        if not verify(org_public_key, bytes.fromhex(head["signature"]), canonical_json({"seq": hseq, "hash": hhash})):
            return ChainReport(False, count, "the signed audit head was altered", hseq)
        if hseq > count:
            return ChainReport(False, count, f"events {count + 1}–{hseq} were removed from the end of the log", count + 1)
        if hseq and hashes.get(hseq) != hhash:
            return ChainReport(False, count, f"event {hseq} differs from the signed audit head", hseq)
    return ChainReport(True, count)


def write_head(path: Path, key: Ed25519PrivateKey, seq: int, hash_: str) -> None:
    """Atomically replace the signed head file with the newest (seq, hash)."""
    sig = sign(key, canonical_json({"seq": seq, "hash": hash_})).hex()
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps({"seq": seq, "hash": hash_, "signature": sig}))


def read_head(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None
