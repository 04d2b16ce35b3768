"""Render jobs on the command line: queue them, show each one's progress bar whoever runs it, print the outcome.

Used by `voxgate render`, `voxgate worker` and `voxgate demo`; each of them runs
the `render` queue in its own process (`JobWorker`) while it waits, so on one
machine the jobs are rendered right there, and with workers elsewhere by
whichever takes them first.
"""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipeline.cli.output import console, print_table, success
from pipeline.errors import EngineError, TransitionError, VoxgateError
from pipeline.services.render import STEPS, RenderResult, claimable, job_of
from pipeline.services.workspace import Workspace, utcnow

FOLLOW_POLL_S = 0.5
STAGES = ("queued", *STEPS)  # a job's bar: waiting for a worker, then the render's steps


def render_columns() -> tuple[Any, ...]:
    """A render's progress bar, whether this process renders or follows another worker's render."""
    return (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn())


def render_jobs(ws: Workspace, statement_ids: list[int], actor: str | None
                ) -> tuple[list[RenderResult], list[tuple[int, VoxgateError]], list[int]]:
    """Queue a render job for each statement (or find the one queued or running) and show every job's progress
    until all end; (results, failures, taken: statements another renderer took first)."""
    from pipeline.services.render_jobs import await_jobs, outcome_error, request_renders

    jobs = request_renders(ws, statement_ids, actor)
    results, failures, taken = [], [], []
    with Progress(*render_columns(), console=console) as bar:
        tasks = {sid: bar.add_task(f"statement {sid}: queued", total=len(STAGES)) for sid in jobs}

        def moved(sid: int, step: str) -> None:
            bar.update(tasks[sid], completed=STAGES.index(step) if step in STAGES else 0,
                       description=f"statement {sid}: {step}")

        for sid, status in sorted(await_jobs(ws, jobs, moved).items()):
            out = status.output or {}
            if status.status == "SUCCESS" and "figures" in out:
                results.append(RenderResult(sid, out["clip"], out["figures"]))
                bar.update(tasks[sid], completed=len(STAGES), description=f"statement {sid}: draft ready")
                continue
            error = outcome_error(status)
            if isinstance(error, TransitionError) and sid not in claimable(ws, utcnow()) and out.get("clip") is None:
                taken.append(sid)  # claimed first by a render outside this job, and theirs now
                bar.update(tasks[sid], description=f"statement {sid}: taken by another worker")
                continue
            failures.append((sid, error))
            bar.update(tasks[sid], description=f"statement {sid}: refused")
    return results, failures, taken


def follow(ws: Workspace, statement_id: int) -> bool:
    """Show the progress of a running render of `statement_id` that another process holds outside the job queue
    until it ends; False if none does (or its worker died meanwhile: then a render job takes it over)."""
    from pipeline.services.jobs import following, list_jobs

    job = following(ws, statement_id, utcnow())
    if job is None or job_of(job.worker) is not None:
        return False  # a render job is awaited as a job: resumed at once here if its worker died
    typer.echo(f"Statement {statement_id} is being rendered by worker {job.worker}; following it.")
    with Progress(*render_columns(), console=console) as bar:
        task = bar.add_task(f"statement {statement_id}", total=len(STAGES))
        while True:
            (now_job,) = [j for j in list_jobs(ws, statement_id=statement_id, limit=None) if j.clip_id == job.clip_id]
            status = now_job.status(utcnow())
            if status == "running":
                step = now_job.step or STEPS[0]
                bar.update(task, completed=STAGES.index(step) if step in STAGES else 0,
                           description=f"statement {statement_id}: {step}")
                time.sleep(FOLLOW_POLL_S)
                continue
            if status == "worker lost":
                bar.update(task, description=f"statement {statement_id}: its worker stopped answering")
                return False
            break
    if now_job.state == "failed":
        raise EngineError(f"Statement {statement_id}'s render by {job.worker} failed: {now_job.error or 'no reason'}; "
                          f"see `voxgate jobs show {statement_id}`.")
    success(f"Statement {statement_id} rendered by {job.worker}: clip {job.clip_id} ({now_job.state}).")
    return True


def print_renders(results: list[RenderResult], failures: list[tuple[int, VoxgateError]]) -> None:
    if results:
        print_table("Rendered drafts", ["statement", "clip", "duration", "LUFS", "true peak", "watermark", "WER"], [
            (r.statement_id, r.clip_id, f"{r.figures['duration_s']:.1f} s", r.figures["integrated_lufs"],
             r.figures["true_peak_dbtp"], r.figures["presence_score"], r.figures.get("wer"))
            for r in results])
    for sid, exc in failures:
        typer.echo(f"statement {sid}: {type(exc).__name__}: {exc}", err=True)
