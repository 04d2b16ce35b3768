"""Render jobs as the store knows them: one per claim (a clip row), with its worker, lease and outcome.

A render's claim is its clip row: `rendering` while a worker holds it, then
`draft` (done), `failed` (the render stopped, or its worker died and the
statement was reclaimed) or later states. The attempt number counts the
claims of the same statement; the error is the reason recorded in the audit
log when the attempt failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select

from pipeline.errors import NotFoundError
from pipeline.services.workspace import Workspace
from pipeline.store.models import AuditRow, ClipRow

DEFAULT_LIMIT: Final = 50


@dataclass(frozen=True)
class RenderJob:
    clip_id: int
    statement_id: int
    revision: int
    attempt: int
    state: str  # rendering | draft | failed | released | superseded | revoked
    worker: str | None
    started_at: datetime
    lease_until: datetime | None
    error: str | None
    step: str | None = None  # the step a running render is at (services.render.STEPS)

    def status(self, now: datetime) -> str:
        """`running`, or `worker lost` once a rendering job's lease ran out; otherwise the clip's state."""
        if self.state != "rendering":
            return self.state
        return "worker lost" if self.lease_until is not None and now > self.lease_until else "running"


def list_jobs(ws: Workspace, *, statement_id: int | None = None, limit: int | None = DEFAULT_LIMIT) -> list[RenderJob]:
    """Render jobs, newest first (all of one statement's with `statement_id`)."""
    with ws.sessions() as s:
        q = select(ClipRow).order_by(ClipRow.id.desc())
        if statement_id is not None:
            q = q.where(ClipRow.statement_id == statement_id)
        clips = list(s.scalars(q.limit(limit) if limit else q))
        ids = sorted({c.statement_id for c in clips})
        attempts: dict[int, list[int]] = {}
        for sid, cid in s.execute(select(ClipRow.statement_id, ClipRow.id).where(ClipRow.statement_id.in_(ids))
                                  .order_by(ClipRow.id)):
            attempts.setdefault(sid, []).append(cid)
        errors: dict[int, str] = {}
        failed = s.scalars(select(AuditRow).where(AuditRow.action == "voxgate.statement.render_failed",
                                                  AuditRow.subject.in_([str(i) for i in ids])))
        for event in failed:
            if "clip" in event.data:
                errors[int(event.data["clip"])] = str(event.data.get("reason", ""))
    return [RenderJob(c.id, c.statement_id, c.revision, attempts[c.statement_id].index(c.id) + 1, c.state, c.worker,
                      c.created_at, c.lease_until, errors.get(c.id), c.step) for c in clips]


def statement_jobs(ws: Workspace, statement_id: int) -> list[RenderJob]:
    jobs = list_jobs(ws, statement_id=statement_id, limit=None)
    if not jobs:
        raise NotFoundError(f"Statement {statement_id} has never been rendered; list render jobs with `voxgate jobs list`.")
    return jobs


def following(ws: Workspace, statement_id: int, now: datetime) -> RenderJob | None:
    """The running render of `statement_id` when a live worker holds it (to follow, not to claim), else None."""
    jobs = list_jobs(ws, statement_id=statement_id, limit=1)
    return jobs[0] if jobs and jobs[0].status(now) == "running" else None
