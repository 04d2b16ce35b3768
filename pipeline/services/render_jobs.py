"""Render jobs: a statement's render as a durable DBOS workflow on the `render` queue.

A job's steps are the render's parts (`services.render`): `claim` (the gates,
then the statement moves to `rendering` under the job's fenced claim),
`synthesise` (synthesis, loudness, disclosure and the presence watermark: the
premaster, stored content-addressed), `produce` (from the stored premaster:
the serial watermark and the signed exports, stored content-addressed once
the speech-recognition gate, begun on the synthesised speech, heard the
approved words) and `register`
(the draft, if consent and approvals still hold); or `release` (the statement
goes back to `text_approved`) when a step refuses.

The job's id is what it makes: ``render-<statement>-r<revision>-<attempt>``.
Asking for a render while one of the statement's jobs is queued or running
gives that job, so asking twice never makes two; a new attempt is a new job
only once the last one ended (a refused render, a statement approved again).

The claim is held by ``<worker>/<job id>``. A worker killed at any step leaves
its job PENDING; the next live worker to look (`services.job_worker`: at once on
its own host, within 50 s of the dead worker's last heartbeat on any other)
resumes it after its last finished step, and takes the claim over as it stands
(`render.adopt`): the statement is never claimed twice, a step that was cut
short runs again (content-addressed files, nothing registered yet) and one that
finished is not (a render killed while producing is not synthesised again),
and a register step that had committed is not repeated. A worker that was only slow
finds the claim no longer its own and registers nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from dbos import DBOS
from dbos import error as dbos_error

from pipeline.domain import Role, State
from pipeline.errors import StoreError, TransitionError, VoxgateError, map_exceptions
from pipeline.services.job_worker import JOBS_VERSION, RUNTIME, executor_id, has_queue, queue_client
from pipeline.services.render import (
    Produced,
    RenderJob,
    Synthesised,
    _claim,
    _release_claim,
    adopt,
    failure_reason,
    job_of,
    produce,
    register,
    rendering_clips,
    synthesise,
)
from pipeline.services.review import require_text_approved
from pipeline.services.statements import get_statement
from pipeline.services.workspace import Workspace, utcnow

log = logging.getLogger(__name__)

QUEUE: Final = "render"
WORKFLOW: Final = "voxgate.render"
ACTIVE: Final = ("ENQUEUED", "PENDING")
POLL_S: Final = 0.5  # how often a waiting command looks at its jobs


@DBOS.workflow(name=WORKFLOW)
def render_job(statement_id: int, actor: str | None) -> dict[str, Any]:
    """Render `statement_id`: {"statement", "clip", "figures"} or, when a step refused, {..., "error", "kind"}."""
    holder = f"{executor_id()}/{DBOS.workflow_id}"  # whichever worker runs (or resumes) this job
    clip_id = None
    try:
        clip_id, who = claim_step(statement_id, actor, holder)
        synthesised = synthesise_step(statement_id, clip_id, who, holder)
        produced = produce_step(statement_id, clip_id, synthesised, who, holder)
        register_step(statement_id, clip_id, produced, who, holder)
    except dbos_error.DBOSException:  # DBOS's own (a cancelled job): not a refusal of the render
        raise
    except Exception as exc:  # noqa: BLE001 - every refusal ends the job with its reason; nothing is registered
        reason = failure_reason(exc)
        if clip_id is not None:
            release_step(statement_id, clip_id, reason, holder)
        return {"statement": statement_id, "clip": clip_id, "error": reason, "kind": type(exc).__name__}
    return {"statement": statement_id, "clip": clip_id, "figures": produced.figures}


@DBOS.step(name="claim")
def claim_step(statement_id: int, actor: str | None, holder: str) -> tuple[int, str]:
    clip_id, job = _claim(RUNTIME["ws"], statement_id, actor=actor, now=utcnow(), worker=holder)
    return clip_id, job.actor


@DBOS.step(name="synthesise")
def synthesise_step(statement_id: int, clip_id: int, actor: str, holder: str) -> Synthesised:
    return synthesise(RUNTIME["ws"], clip_id, statement_id, _adopted(clip_id, actor, holder), RUNTIME["tools"])


@DBOS.step(name="produce")
def produce_step(statement_id: int, clip_id: int, synthesised: Synthesised, actor: str, holder: str) -> Produced:
    return produce(RUNTIME["ws"], clip_id, statement_id, _adopted(clip_id, actor, holder), RUNTIME["tools"],
                   synthesised, now=utcnow())


def _adopted(clip_id: int, actor: str, holder: str) -> RenderJob:
    """The job's claim, for this worker: taken over from a dead worker that ran this job before."""
    return adopt(RUNTIME["ws"], clip_id, holder, actor, utcnow())


@DBOS.step(name="register")
def register_step(statement_id: int, clip_id: int, produced: Produced, actor: str, holder: str) -> None:
    register(RUNTIME["ws"], statement_id, clip_id, produced, actor=actor, now=utcnow(), worker=holder)


@DBOS.step(name="release")
def release_step(statement_id: int, clip_id: int, reason: str, holder: str) -> None:
    _release_claim(RUNTIME["ws"], statement_id, clip_id, reason, now=utcnow(), worker=holder)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    status: str  # ENQUEUED | PENDING | SUCCESS | ERROR | CANCELLED | ...
    output: dict[str, Any] | None
    error: str | None

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE


def check_renderable(ws: Workspace, statement_id: int, actor: str | None) -> None:
    """Refuse at once, changing nothing, what no render job could do: an unknown statement or actor, one neither
    text-approved nor being rendered, or one whose consent or approvals do not hold now."""
    with ws.sessions() as s:
        ws.actor(s, actor, Role.REVIEWER, Role.SUBMITTER)
        row = get_statement(s, statement_id)
        if row.state == State.RENDERING.value:
            return
        require_text_approved(s, ws, row, utcnow())
        if row.state != State.TEXT_APPROVED.value:
            raise TransitionError(f"Statement {statement_id} is {row.state.replace('_', ' ')}; only a text-approved "
                                  "statement is rendered (see `voxgate status`).")


def held_by_jobs(ws: Workspace) -> list[int]:
    """Statements being rendered under a render job's claim (running, or left by a worker that died)."""
    with ws.sessions() as s:
        return sorted(sid for sid, clip in rendering_clips(s).items() if job_of(clip.worker) is not None)


def request_renders(ws: Workspace, statement_ids: list[int], actor: str | None) -> dict[int, str]:
    """The job rendering each statement: the one queued or running, or a new one enqueued now."""
    with ws.sessions() as s:
        revision = {sid: get_statement(s, sid).revisions[-1].number for sid in statement_ids}
        held = {sid: clip.worker for sid, clip in rendering_clips(s, statement_ids).items()}
    jobs = {}
    with queue_client(ws) as client, map_exceptions({Exception: StoreError}, "The render jobs could not be queued"):
        for sid in statement_ids:
            prefix = f"render-{sid}-r{revision[sid]}-"
            known = client.list_workflows(workflow_id_prefix=prefix, load_input=False, load_output=False)
            live = [j.workflow_id for j in known if j.status == "ENQUEUED"
                    or j.status == "PENDING" and j.app_version == JOBS_VERSION]  # another version's never resumes
            if live:
                jobs[sid] = job_of(held.get(sid)) if job_of(held.get(sid)) in live else live[0]
                continue
            jobs[sid] = f"{prefix}{len(known) + 1}"
            client.enqueue({"workflow_name": WORKFLOW, "queue_name": QUEUE, "workflow_id": jobs[sid]}, sid, actor)
    return jobs


def queued_renders(ws: Workspace, statement_id: int | None = None) -> list[tuple[str, int]]:
    """Render jobs waiting for a worker (no claim yet), oldest first: (job id, statement)."""
    if not has_queue(ws):
        return []
    prefix = f"render-{statement_id}-" if statement_id is not None else "render-"
    with queue_client(ws) as client, map_exceptions({Exception: StoreError}, "The render jobs could not be listed"):
        return [(w.workflow_id, int(w.workflow_id.split("-")[1])) for w in client.list_workflows(
            name=WORKFLOW, status="ENQUEUED", workflow_id_prefix=prefix, load_input=False, load_output=False)]


def _statuses(client: Any, job_ids: list[str]) -> dict[str, JobStatus]:
    with map_exceptions({Exception: StoreError}, "The render jobs could not be read"):
        return {w.workflow_id: JobStatus(w.workflow_id, w.status, w.output,
                                         str(w.error) if w.error is not None else None)
                for w in client.list_workflows(workflow_ids=job_ids)}


def outcome_error(status: JobStatus) -> VoxgateError:
    """The refusal a finished job reported, as the error its step raised (one line for the CLI)."""
    import pipeline.errors as errors

    out = status.output or {}
    kind = getattr(errors, str(out.get("kind")), None)
    cls = kind if isinstance(kind, type) and issubclass(kind, VoxgateError) else VoxgateError
    return cls(out.get("error") or status.error or f"render job {status.job_id} ended {status.status.lower()}")


def await_jobs(ws: Workspace, jobs: dict[int, str], on_step: Callable[[int, str], None], *,
               poll_s: float = POLL_S) -> dict[int, JobStatus]:
    """Wait until the render jobs `jobs` ({statement: job id}) end, whichever workers run them; calls
    `on_step(statement, step)` as each moves ("queued" until it holds its claim). Their final statuses."""
    waiting, ended = dict(jobs), {}
    with queue_client(ws) as client:
        while waiting:
            statuses = _statuses(client, list(waiting.values()))
            with ws.sessions() as s:
                held = {sid: (clip.step or "claim", job_of(clip.worker))
                        for sid, clip in rendering_clips(s, list(waiting)).items()}
            for sid, job in list(waiting.items()):
                status = statuses.get(job)
                if status is not None and status.done:
                    ended[sid] = status
                    del waiting[sid]
                else:
                    step, holder = held.get(sid, ("queued", None))
                    on_step(sid, step if holder == job else "queued")
            if waiting:
                time.sleep(poll_s)
    return ended
