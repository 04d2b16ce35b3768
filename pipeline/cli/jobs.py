"""`voxgate jobs …`: render and copy jobs, which worker holds them, and why one failed."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.output import HOME_DEFAULT, AsJson, Home, handles_errors, print_json, print_table
from pipeline.services import jobs as svc
from pipeline.services.workspace import open_workspace, utcnow

app = typer.Typer(help="Render and copy jobs: state, worker, attempts, errors.", no_args_is_help=True)


def _rows(jobs: list[svc.RenderJob], queued: list[tuple[str, int]], as_json: bool, title: str) -> None:
    from pipeline.services.render import job_of

    now = utcnow()
    if as_json:
        print_json([{"job": job, "statement": sid, "status": "queued"} for job, sid in queued] + [
            {"job": job_of(j.worker), "clip": j.clip_id, "statement": j.statement_id, "revision": j.revision,
             "attempt": j.attempt, "status": j.status(now), "step": j.step, "worker": j.worker,
             "started_at": j.started_at, "lease_until": j.lease_until, "error": j.error} for j in jobs])
        return
    print_table(title, ["clip", "statement", "attempt", "status", "step", "worker", "started", "error"], [
        *(("", sid, "", "queued", "", "", "", "") for _job, sid in queued),
        *((j.clip_id, j.statement_id, j.attempt, j.status(now), j.step if j.status(now) == "running" else "",
           j.worker or "", f"{j.started_at:%Y-%m-%d %H:%M:%S}", j.error or "") for j in jobs)])


@app.command("list")
@handles_errors
def list_(
    limit: Annotated[int, typer.Option(help="How many of the newest jobs to show.")] = svc.DEFAULT_LIMIT,
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
) -> None:
    """List render jobs, newest first: queued, running, done, failed, or with a lost worker (resumed elsewhere)."""
    from pipeline.services.render_jobs import queued_renders

    ws = open_workspace(home)
    _rows(svc.list_jobs(ws, limit=limit), queued_renders(ws), as_json, "Render jobs")


@app.command("show")
@handles_errors
def show(statement_id: int, home: Home = HOME_DEFAULT, as_json: AsJson = False) -> None:
    """Every render attempt of one statement: worker, status and the error that ended it."""
    from pipeline.services.render_jobs import queued_renders

    ws = open_workspace(home)
    queued = queued_renders(ws, statement_id)  # a statement only queued has no attempt yet
    jobs = svc.list_jobs(ws, statement_id=statement_id, limit=None) if queued else svc.statement_jobs(ws, statement_id)
    _rows(jobs, queued, as_json, f"Render jobs of statement {statement_id}")


@app.command("copies")
@handles_errors
def copies(
    limit: Annotated[int, typer.Option(help="How many of the newest jobs to show.")] = svc.DEFAULT_LIMIT,
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
) -> None:
    """List the jobs queued at release (personal copies, the clip's video and captions), newest first: queued,
    being made, done or failed."""
    from pipeline.services.copy_jobs import list_copy_jobs

    jobs = list_copy_jobs(open_workspace(home), limit=limit)
    if as_json:
        print_json([{"job": j.job_id, "clip": j.clip_id, "recipient": j.recipient, "formats": list(j.formats),
                     "status": j.status, "worker": j.executor, "attempts": j.attempts, "created_at": j.created_at,
                     "error": j.error} for j in jobs])
        return
    print_table("Copy jobs", ["clip", "recipient", "formats", "status", "worker", "attempts", "queued", "error"], [
        (j.clip_id, j.recipient or "(the clip's own)", ", ".join(j.formats), j.status, j.executor or "", j.attempts or 0,
         f"{j.created_at:%Y-%m-%d %H:%M:%S}" if j.created_at else "", j.error or "") for j in jobs])
