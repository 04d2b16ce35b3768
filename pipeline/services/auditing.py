"""Reading and checking the audit log: the chain, the signed head, and a replay of the state gates depend on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from pipeline.audit import ChainReport, Head, commitment_problem, stored_head, verify_chain
from pipeline.audit.head import read_head_file
from pipeline.domain import ClipState, VoiceState
from pipeline.errors import NotFoundError
from pipeline.identity.history import people
from pipeline.identity.keys import verify
from pipeline.services.workspace import Workspace, action_payload
from pipeline.store.models import ApprovalRow, AuditRow, ClipRow, StatementRow, VoiceRow

_RAW_EVENTS = text("SELECT seq, at, actor, action, subject, data, prev_hash, hash, signature "
                   "FROM audit_events ORDER BY seq")


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    events: int
    problem: str = ""
    first_bad_seq: int | None = None
    disagreements: tuple[str, ...] = field(default_factory=tuple)  # with --replay: rows the records contradict


def audit_log(ws: Workspace, *, limit: int | None = None, subject: str | None = None) -> list[AuditRow]:
    with ws.sessions() as s:
        q = select(AuditRow).order_by(AuditRow.seq.desc())
        if subject:
            q = q.where(AuditRow.subject == subject)
        if limit:
            q = q.limit(limit)
        return list(reversed(s.scalars(q).all()))


def audit_head(ws: Workspace) -> Head:
    """The signed head kept with the database, to publish outside the workspace."""
    with ws.sessions() as s:
        head = stored_head(s)
    if head is None:
        raise NotFoundError("This workspace has no signed audit head; run `voxgate audit verify` to see why.")
    return head


def _event_hash(s: Session, seq: int) -> str | None:
    return s.scalar(text("SELECT hash FROM audit_events WHERE seq = :seq"), {"seq": seq})


def _check_head(s: Session, head: Head, chain: ChainReport, org_public_key: bytes, what: str, *,
                exact: bool) -> str | None:
    if not head.verifies(org_public_key):
        return f"{what} was altered (its signature does not verify)"
    if head.seq > chain.events:
        return f"events {chain.events + 1}–{head.seq} were removed from the end of the log ({what} names them)"
    if head.seq and _event_hash(s, head.seq) != head.hash:
        return f"event {head.seq} differs from {what}: the chain does not extend it"
    if exact and head.seq != chain.events:
        return f"events {head.seq + 1}–{chain.events} are not covered by {what}"
    return None


def audit_verify(ws: Workspace, *, head_file: Path | None = None, replay: bool = False) -> AuditReport:
    """The chain, the signed head (the database's, the published file, and `head_file` if given), the record
    sets the head commits to, and with `replay` every row whose state the events and signed records contradict."""
    external = read_head_file(head_file) if head_file is not None else None
    if head_file is not None and external is None:
        raise NotFoundError(f"No file {head_file}; give the copy of the head printed by `voxgate audit head`.")
    with ws.sessions() as s:
        chain = verify_chain(s.execute(_RAW_EVENTS).all(), ws.org_public_key)
        if not chain.ok:
            return AuditReport(False, chain.events, chain.problem, chain.first_bad_seq)
        if (bad := _actor_signature_problem(s, ws)) is not None:
            return AuditReport(False, chain.events, *bad)
        problem = None
        head = stored_head(s)
        if head is None:
            if chain.events:
                problem = "the signed audit head is missing, so removed events at the end could not be noticed"
        else:
            problem = _check_head(s, head, chain, ws.org_public_key, "the signed audit head", exact=True)
        published = _published_copy(ws)
        if problem is None and published is not None:
            problem = _check_head(s, published, chain, ws.org_public_key, f"the published head {ws.head_path.name}",
                                  exact=False)
        if problem is None and external is not None:
            problem = _check_head(s, external, chain, ws.org_public_key, f"the head kept in {head_file}", exact=False)
        if problem is None:
            problem = commitment_problem(s, ws.org_public_key)
        disagreements = tuple(replay_disagreements(s, ws)) if replay else ()
    report = AuditReport(problem is None, chain.events, problem or "",
                         None if problem is None else (head.seq if head else chain.events))
    if disagreements:
        report = replace(report, ok=False, disagreements=disagreements,
                         problem=report.problem or f"{len(disagreements)} rows disagree with the events and signed records")
    return report


def _actor_signature_problem(s: Session, ws: Workspace) -> tuple[str, int] | None:
    """The first event whose actor's own signature does not verify against the key they held at that event."""
    held, workspace_id = people(s), ws.id_in(s)
    passkey_proof = _passkey_proof_check(s, ws)
    for row in s.scalars(select(AuditRow).order_by(AuditRow.seq)):
        signed = row.data.get("signed") if isinstance(row.data, dict) else None
        if signed is None:
            continue
        if isinstance(signed, dict) and "passkey" in signed:
            if not passkey_proof(row, signed):
                return (f"event {row.seq} ({row.action}) names a passkey decision by {row.actor} whose stored "
                        "assertion does not verify, or was not theirs at that event", row.seq)
            continue
        data = {k: v for k, v in row.data.items() if k != "signed"}
        key = held.key_at(row.actor, str(signed.get("key")), row.seq) if isinstance(signed, dict) else None
        try:
            signature = bytes.fromhex(str(signed.get("signature")))  # type: ignore[union-attr]
        except ValueError:
            signature = b""
        payload = action_payload(workspace_id, row.action, row.subject, data, row.actor, row.at)
        if key is None or not verify(key.public_key, signature, payload):
            return (f"event {row.seq} ({row.action}) carries a signature by {row.actor} that does not verify "
                    "against the key they held then", row.seq)
    return None


def _passkey_proof_check(s: Session, ws: Workspace):  # noqa: ANN202 - Callable[[AuditRow, dict], bool]
    """For events a passkey decision caused (`PasskeyActor`): the approval they name is the actor's own,
    signed with that passkey, recorded at or before the event and at the same instant, and it verifies
    offline (`review.verifier`: the stored assertion, the passkey live and the actor active at its seq)."""
    from pipeline.services.review import approvals_of, verifier

    verify_approval = verifier(s, ws)

    def _check(row: AuditRow, signed: dict) -> bool:
        try:
            approval = s.get(ApprovalRow, int(signed["approval"]))
        except (KeyError, TypeError, ValueError):
            return False
        if (approval is None or approval.reviewer != row.actor or approval.key_fingerprint != signed["passkey"]
                or approval.seq is None or approval.seq > row.seq or approval.created_at != row.at):
            return False
        mine = [a for a in approvals_of(s, approval.statement_id) if a.seq == approval.seq]
        return len(mine) == 1 and verify_approval(mine[0])

    return _check


def _published_copy(ws: Workspace) -> Head | None:
    """The head file in the workspace, when it is one this version writes (older ones signed only seq and hash)."""
    try:
        return read_head_file(ws.head_path)
    except Exception:  # noqa: BLE001 - an unreadable copy is reported by the database's own head, not here
        return None


def replay_disagreements(s: Session, ws: Workspace) -> list[str]:
    """Recompute, from the events and the signed records, the state every gate depends on; list each row that
    says otherwise."""
    from pipeline.services.gates import standing
    from pipeline.services.voices import binding_revocation, current_consent

    statement_state: dict[str, str] = {}
    clip_state: dict[str, str] = {}
    for subject, action, data in s.execute(text("SELECT subject, action, data FROM audit_events ORDER BY seq")):
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                continue  # reported by the chain check
        if not isinstance(data, dict) or "to" not in data:
            continue
        if action.startswith("voxgate.statement."):
            statement_state[subject] = str(data["to"])
        elif action.startswith("voxgate.clip."):
            clip_state[subject] = str(data["to"])
    out: list[str] = []
    for row in s.scalars(select(StatementRow).order_by(StatementRow.id)):
        logged = statement_state.get(str(row.id))
        if logged is not None and logged != row.state:
            out.append(f"statement {row.id}: the row says {row.state}, the audit log says {logged}")
    for clip in s.scalars(select(ClipRow).order_by(ClipRow.id)):
        found = standing(s, ws, clip)
        logged = clip_state.get(str(clip.id))
        if found.state.value != clip.state:
            out.append(f"clip {clip.id}: the row says {clip.state}, the signed records say {found.state.value}"
                       + (f" ({found.reason})" if found.reason else ""))
        elif logged is not None and logged != clip.state and clip.state != ClipState.REVOKED.value:
            out.append(f"clip {clip.id}: the row says {clip.state}, the audit log says {logged}")
    for voice in s.scalars(select(VoiceRow).order_by(VoiceRow.id)):
        row = current_consent(s, voice.id, verified=False)
        rev = binding_revocation(s, voice.id, voice.model_sha256, row)
        if rev is None:
            continue
        if voice.state != VoiceState.REVOKED.value:
            out.append(f"voice {voice.id}: the row says {voice.state}, a signed revocation of {rev.at:%Y-%m-%d} "
                       "says revoked")
        if row is not None and row.revoked_at is None:
            out.append(f"consent {row.id} of voice {voice.id}: the row says not revoked, a signed revocation says "
                       "revoked")
    return out
