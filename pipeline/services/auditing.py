"""Reading and checking the audit log."""

from __future__ import annotations

from sqlalchemy import select

from pipeline.audit import ChainReport, read_head, verify_chain
from pipeline.services.workspace import Workspace
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
    with ws.sessions() as s:
        rows = s.scalars(select(AuditRow).order_by(AuditRow.seq)).all()
        return verify_chain(rows, ws.org_public_key, read_head(ws.head_path))
