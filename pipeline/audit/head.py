"""The signed audit head: the last event, plus digests of the record sets a gate must never lose.

The head lives with the database (table `audit_head`, signed by the
organisation key) and is copied to `audit-head.json` for publishing. Besides
the last sequence number and hash it commits to the set of revocation
records and the set of signed vetoes (rejections, requests for changes):
deleting one of those rows is then caught by the next gate that reads them,
not only by `voxgate audit verify`.

A transaction moves the head forward. Its record-set digests move only when
the sets as read equal the committed sets plus what this transaction added
(as its own audit events say); otherwise the old commitment is kept, so a
deletion is never absorbed by the next honest write.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.domain.gates import set_digest
from pipeline.domain.model import Decision, canonical_json
from pipeline.errors import ApprovalError, ConsentError, InputError
from pipeline.identity.keys import sign, verify
from pipeline.store.files import atomic_output
from pipeline.store.models import ApprovalRow, AuditHeadRow, AuditRow, RevocationRow

HEAD_KIND: Final = "voxgate.audit-head/1"
REVOKED_ACTION: Final = "voxgate.consent.revoked"
VETO_ACTIONS: Final = frozenset({f"voxgate.review.{Decision.REJECT.value}",
                                 f"voxgate.review.{Decision.REQUEST_CHANGES.value}"})
_VERIFY_HINT: Final = ("restore the workspace from a backup, and run `voxgate audit verify --replay` to see "
                       "what was changed")


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    revocations_sha256: str
    vetoes_sha256: str
    signature: str  # hex Ed25519 signature by the organisation key over `payload()`

    def payload(self) -> bytes:
        return head_payload(self.seq, self.hash, self.revocations_sha256, self.vetoes_sha256)

    def verifies(self, org_public_key: bytes) -> bool:
        try:
            return verify(org_public_key, bytes.fromhex(self.signature), self.payload())
        except ValueError:
            return False

    def as_dict(self) -> dict[str, Any]:
        return {"kind": HEAD_KIND, **asdict(self)}


def head_payload(seq: int, hash_: str, revocations: str, vetoes: str) -> bytes:
    return canonical_json({"kind": HEAD_KIND, "seq": seq, "hash": hash_, "revocations_sha256": revocations,
                           "vetoes_sha256": vetoes})


def parse_head(raw: Any, source: str) -> Head:
    """A head read from JSON (a published copy); `InputError` if it is not one."""
    try:
        head = Head(int(raw["seq"]), str(raw["hash"]), str(raw.get("revocations_sha256", "")),
                    str(raw.get("vetoes_sha256", "")), str(raw["signature"]))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{source} is not a voxgate audit head; print one with `voxgate audit head`.") from None
    return head


def read_head_file(path: Path) -> Head | None:
    """The head in `path`, None if there is no such file; `InputError` if it is unreadable."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not a readable audit head ({exc}).") from None
    return parse_head(raw, str(path))


def write_head_file(path: Path, head: Head) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(head.as_dict()))


def stored_head(s: Session) -> Head | None:
    row = s.get(AuditHeadRow, 1)
    if row is None:
        return None
    return Head(row.seq, row.hash, row.revocations_sha256, row.vetoes_sha256, bytes(row.signature).hex())


def revocation_items(s: Session) -> set[str]:
    return set(s.scalars(select(RevocationRow.record_sha256)))


def veto_items(s: Session) -> set[str]:
    rows = s.scalars(select(ApprovalRow.signature).where(ApprovalRow.decision != Decision.APPROVE.value))
    return {hashlib.sha256(bytes(sig)).hexdigest() for sig in rows}


def last_seq(s: Session) -> int:
    return s.scalar(select(func.max(AuditRow.seq))) or 0


def advance(s: Session, key: Ed25519PrivateKey, org_public_key: bytes, before_seq: int) -> Head | None:
    """Move the head to the newest event inside the caller's transaction; None if there is nothing to sign.

    `before_seq` is the last event before this transaction began. A transaction that recorded no event
    (a heartbeat, a render's step) leaves the head as it was, unsigned again. A missing head is made only
    for a log that was empty before (a new workspace); otherwise it stays missing and every gate refuses.
    """
    last = s.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
    if last is None or last.seq == before_seq:
        return None
    old = stored_head(s)
    revocations, vetoes = revocation_items(s), veto_items(s)
    if old is None:
        if before_seq != 0:
            return None
        rev_digest, veto_digest = set_digest(revocations), set_digest(vetoes)
    else:
        if not old.verifies(org_public_key):
            return None
        added_rev: set[str] = set()
        added_veto: set[str] = set()
        for event in s.scalars(select(AuditRow).where(AuditRow.seq > before_seq)):
            if event.action == REVOKED_ACTION and event.data.get("revocation_sha256"):
                added_rev.add(str(event.data["revocation_sha256"]))
            elif event.action in VETO_ACTIONS and event.data.get("signature_sha256"):
                added_veto.add(str(event.data["signature_sha256"]))
        rev_digest = set_digest(revocations) if set_digest(revocations - added_rev) == old.revocations_sha256 \
            else old.revocations_sha256
        veto_digest = set_digest(vetoes) if set_digest(vetoes - added_veto) == old.vetoes_sha256 \
            else old.vetoes_sha256
    return put_head(s, key, last.seq, last.hash, rev_digest, veto_digest)


def put_head(s: Session, key: Ed25519PrivateKey, seq: int, hash_: str, revocations: str, vetoes: str) -> Head:
    signature = sign(key, head_payload(seq, hash_, revocations, vetoes))
    row = s.get(AuditHeadRow, 1)
    if row is None:
        row = AuditHeadRow(id=1)
        s.add(row)
    row.seq, row.hash, row.revocations_sha256, row.vetoes_sha256, row.signature = (
        seq, hash_, revocations, vetoes, signature)
    s.flush()
    return Head(seq, hash_, revocations, vetoes, signature.hex())


def commitment_problem(s: Session, org_public_key: bytes) -> str | None:
    """Why the revocations and vetoes as read cannot be trusted (head missing, altered, or sets differ), or None."""
    head = stored_head(s)
    if head is None:
        return "the signed audit head is missing" if last_seq(s) else None
    if not head.verifies(org_public_key):
        return "the signed audit head was altered"
    if set_digest(revocation_items(s)) != head.revocations_sha256:
        return "the revocation records differ from the set the signed audit head commits to (one was removed or altered)"
    if set_digest(veto_items(s)) != head.vetoes_sha256:
        return ("the rejections and requests for changes differ from the set the signed audit head commits to "
                "(one was removed or altered)")
    return None


def require_commitments(s: Session, org_public_key: bytes) -> None:
    """The gate's own check that no revocation or veto was deleted: `ConsentError`/`ApprovalError` if one was."""
    problem = commitment_problem(s, org_public_key)
    if problem is None:
        return
    error = ApprovalError if "requests for changes" in problem else ConsentError
    raise error(f"Refused: {problem}; nothing is rendered, released or handed out until it is fixed: {_VERIFY_HINT}.")
