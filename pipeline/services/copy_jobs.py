"""Personal copies made before anyone asks: at release, one durable job per active distributor.

When a clip is released, hundreds of distributors ask for it within minutes;
made on the first download, each waited seconds for marking and encoding.
So the release enqueues, for every active distributor (a distributor, not
disabled, holding a live access token), a job that makes their copy in the
formats they take most (`PREPARED_FORMATS`); the download then only finds it
(`deliveries.registered_copy`). Anyone added later, and any other format
(WAV, MP3, the other videos), still gets theirs on first request.

Before the copies, the release enqueues the clip's own files that everyone
shares (`PREPARED_DERIVED`): the vertical video's picture, which each
recipient's vertical copy takes with their own sound, and the SRT and WebVTT
captions. So videos and captions are jobs too, and a worker makes the picture
once, before the copies that need it.

The jobs are DBOS workflows on the `copies` queue (`services.job_worker` runs
them). A job's id is what it makes, ``copy-<clip>-<recipient>-<formats>`` or
``derived-<clip>-<format>``, so enqueueing it twice makes one. It has two steps:
`check` (the clip may still be handed out, the recipient is still active) and
`make` (`deliveries.prepare_copies`: mark once, encode in parallel, register
every file in one transaction) or `make-derived` (`deliveries.make_derived`).
Its steps are idempotent (content-addressed blobs, one registration per
(delivery, format) or (clip, format), inside the store's write lock), so a
worker killed mid-copy and restarted makes what is missing, a slow worker
registers nothing twice, and no half file is ever registered.

Enqueueing is a few inserts in the system database: the release does not wait
for any copy (0.2-0.8 s for the release with 4 distributors, measured).
Measured by scripts/bench_copies.py on 2 cores, a 75 s clip: one copy in
the three prepared formats 4.3 s of wall time, 14.1 copies a minute with 2
at once, 7.0 per minute per core: 1,000 distributors on 16 cores projected at
9.1 minutes (13.5 on a day the same machine ran 1.5x slower: the copy costs
what its ffmpeg encodes cost, 1.05-1.08x). A copy costs about 8 MB per minute
of clip, nearly all of it the video. Jobs enqueued here carry no application
version, so the newest version of voxgate's workers takes them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from dbos import DBOS
from sqlalchemy import select

from pipeline.domain import Role
from pipeline.errors import StoreError, VoxgateError, map_exceptions
from pipeline.services.job_worker import RUNTIME, queue_client
from pipeline.services.workspace import Workspace, utcnow
from pipeline.store.models import AccessTokenRow, UserRow

log = logging.getLogger(__name__)

#: What distributors take most: the Ogg Opus voice note, Opus in MP4 (M4A, the messaging-app format that
#: carries content credentials inside) and the vertical video. WAV, MP3 and the other videos: on request.
PREPARED_FORMATS: Final = ("ogg", "m4a", "mp4-vertical")
#: The clip's own files made at release with the copies, before them: the vertical video's picture (which
#: every recipient's vertical copy takes, with their own sound) and the captions, which are the same for all.
PREPARED_DERIVED: Final = ("mp4-vertical", "srt", "vtt")
QUEUE: Final = "copies"
WORKFLOW: Final = "voxgate.copy"
DERIVED_WORKFLOW: Final = "voxgate.derived"
_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.@+-]")


@DBOS.workflow(name=WORKFLOW)
def copy_job(clip_id: int, recipient: str, formats: list[str]) -> dict[str, Any]:
    """One recipient's copies of a released clip in `formats`: {"made": {format: sha256}, "refused": reason}."""
    refused = check_step(clip_id, recipient, formats)
    if refused is not None:
        return {"made": {}, "refused": refused}
    return {"made": make_step(clip_id, recipient, formats), "refused": None}


@DBOS.workflow(name=DERIVED_WORKFLOW)
def derived_job(clip_id: int, fmt: str) -> dict[str, Any]:
    """The clip's own `fmt` (a video's picture, captions): {"made": {format: sha256}, "refused": reason}."""
    refused = check_step(clip_id, None, [fmt])
    if refused is not None:
        return {"made": {}, "refused": refused}
    return {"made": {fmt: make_derived_step(clip_id, fmt)}, "refused": None}


@DBOS.step(name="check")
def check_step(clip_id: int, recipient: str | None, formats: list[str]) -> str | None:
    """Why the files must not be made now (revoked, consent ended, recipient gone), else None."""
    from pipeline.services.clips import check_hand_over

    ws, now = RUNTIME["ws"], utcnow()
    if recipient is not None and recipient not in active_distributors(ws, now):
        return f"{recipient} is no longer an active distributor"
    try:
        for fmt in formats:
            check_hand_over(ws, clip_id, fmt, now)
    except VoxgateError as exc:
        return str(exc)
    return None


@DBOS.step(name="make", retries_allowed=True, max_attempts=3)
def make_step(clip_id: int, recipient: str, formats: list[str]) -> dict[str, str]:
    from pipeline.services.deliveries import prepare_copies

    return prepare_copies(RUNTIME["ws"], clip_id, recipient, tuple(formats), now=utcnow(), tools=RUNTIME["tools"])


@DBOS.step(name="make-derived", retries_allowed=True, max_attempts=3)
def make_derived_step(clip_id: int, fmt: str) -> str:
    from pipeline.services.deliveries import make_derived

    return make_derived(RUNTIME["ws"], clip_id, fmt, RUNTIME["tools"], now=utcnow())


def copy_job_id(clip_id: int, recipient: str, formats: tuple[str, ...]) -> str:
    """The job's id, derived from what it makes: the same copy asked for twice is one job."""
    return f"copy-{clip_id}-{_ID_UNSAFE.sub('_', recipient)}-{'+'.join(formats)}"


def derived_job_id(clip_id: int, fmt: str) -> str:
    """A clip's own video picture or captions: one job per (clip, format)."""
    return f"derived-{clip_id}-{fmt}"


def active_distributors(ws: Workspace, now: datetime) -> list[str]:
    """Distributors who can download now: not disabled, with an access token neither revoked nor expired."""
    live = select(AccessTokenRow.user).where(AccessTokenRow.revoked_at.is_(None), AccessTokenRow.expires_at > now)
    with ws.sessions() as s:
        return list(s.scalars(select(UserRow.name).where(
            UserRow.role == Role.DISTRIBUTOR.value, UserRow.disabled_at.is_(None), UserRow.name.in_(live))
            .order_by(UserRow.name)))


@dataclass(frozen=True)
class JobState:
    job_id: str
    status: str  # ENQUEUED | PENDING | SUCCESS | ERROR | CANCELLED | ...
    executor: str | None
    attempts: int | None
    output: Any
    clip_id: int | None = None
    recipient: str | None = None
    formats: tuple[str, ...] = ()
    created_at: datetime | None = None
    error: str | None = None


def _state(status: Any) -> JobState:
    args = list((status.input or {}).get("args") or ())  # as enqueued: (clip, recipient, formats) or (clip, format)
    if status.name == DERIVED_WORKFLOW and len(args) == 2:
        args = [args[0], None, [args[1]]]  # the clip's own: no recipient
    args += [None, None, ()][len(args):]
    created = (datetime.fromtimestamp(status.created_at / 1000, tz=timezone.utc)
               if status.created_at is not None else None)
    return JobState(status.workflow_id, status.status, status.executor_id, getattr(status, "recovery_attempts", None),
                    status.output, args[0], args[1], tuple(args[2] or ()), created,
                    str(status.error) if status.error is not None else None)


def enqueue_copies(ws: Workspace, clip_id: int, recipients: list[str],
                   formats: tuple[str, ...] = PREPARED_FORMATS, *, derived: tuple[str, ...] = ()) -> list[str]:
    """Enqueue the clip's own `derived` files (video pictures, captions), then the copies of `clip_id` for
    `recipients`; the job ids (an id already queued or done is kept)."""
    jobs = [(DERIVED_WORKFLOW, derived_job_id(clip_id, fmt), (clip_id, fmt)) for fmt in derived]
    jobs += [(WORKFLOW, copy_job_id(clip_id, name, formats), (clip_id, name, list(formats))) for name in recipients]
    if not jobs:
        return []
    with queue_client(ws) as client, map_exceptions({Exception: StoreError}, "The copy jobs could not be enqueued"):
        for workflow, job, args in jobs:
            client.enqueue({"workflow_name": workflow, "queue_name": QUEUE, "workflow_id": job}, *args)
    return [job for _, job, _ in jobs]


def enqueue_release_copies(ws: Workspace, clip_id: int, *, now: datetime) -> list[str]:
    """At release: the clip's `PREPARED_DERIVED` files and every active distributor's copies in
    `PREPARED_FORMATS` (nothing if no distributor can download it yet); never fails the release.

    The release is done and signed when this runs; a queue that cannot be reached only means the
    copies are made on first request, as for a distributor added later. So it logs, and returns [].
    """
    try:
        recipients = active_distributors(ws, now)
        return enqueue_copies(ws, clip_id, recipients, derived=PREPARED_DERIVED if recipients else ())
    except StoreError as exc:
        log.warning("clip %s released, but its copies were not queued (%s); they are made on first request",
                    clip_id, exc)
        return []


def job_states(ws: Workspace, job_ids: list[str]) -> list[JobState]:
    """What the queue knows of these jobs (those it never saw are left out)."""
    with queue_client(ws) as client:
        return [_state(status) for status in client.list_workflows(workflow_ids=job_ids)]


def list_copy_jobs(ws: Workspace, *, limit: int | None = None) -> list[JobState]:
    """The newest jobs of the copies queue first (copies, and the clips' own videos and captions): queued, being
    made (by which worker), done or failed, and why."""
    with queue_client(ws) as client, map_exceptions({Exception: StoreError}, "The copy jobs could not be listed"):
        return [_state(status) for status in client.list_workflows(name=[DERIVED_WORKFLOW, WORKFLOW], limit=limit,
                                                                   sort_desc=True)]
