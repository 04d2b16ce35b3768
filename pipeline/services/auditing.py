"""Reading and checking the audit log."""

from __future__ import annotations

from sqlalchemy import select

from pipeline.audit import ChainReport, read_head, verify_chain
from pipeline.identity.history import people
from pipeline.identity.keys import verify
from pipeline.services.workspace import Workspace, action_payload
from pipeline.store.models import AuditRow


def audit_log(ws: Workspace, *, limit: int | None = None, subject: str | None = None) -> list[AuditRow]:
    with ws.sessions() as s:
        q = select(AuditRow).order_by(AuditRow.seq.desc())
        if subject:
            q = q.where(AuditRow.subject == subject)
        if limit:
            q = q.limit(limit)
        return list(reversed(s.scalars(q).all()))


def audit_verify(ws: Workspace) -> ChainReport:
    """The chain (hashes, the organisation's signatures, the signed head), then every actor's own signature."""
    with ws.sessions() as s:
        rows = s.scalars(select(AuditRow).order_by(AuditRow.seq)).all()
        report = verify_chain(rows, ws.org_public_key, read_head(ws.head_path))
        if not report.ok:
            return report
        held, workspace_id = people(s), ws.id_in(s)
        for row in rows:
            signed = row.data.get("signed") if isinstance(row.data, dict) else None
            if signed is None:
                continue
            data = {k: v for k, v in row.data.items() if k != "signed"}
            key = held.key_at(row.actor, str(signed.get("key")), row.seq) if isinstance(signed, dict) else None
            try:
                signature = bytes.fromhex(str(signed.get("signature")))  # type: ignore[union-attr]
            except ValueError:
                signature = b""
            payload = action_payload(workspace_id, row.action, row.subject, data, row.actor, row.at)
            if key is None or not verify(key.public_key, signature, payload):
                return ChainReport(False, report.events, f"event {row.seq} ({row.action}) carries a signature by "
                                   f"{row.actor} that does not verify against the key they held then", row.seq)
        return report
