"""The copies queue's worker: DBOS runs the copy jobs (`services.copy_jobs`) in this process.

`voxgate worker` (with `--queues copies`, the default) and `voxgate serve`
run one `CopyWorker` each. DBOS holds one application per process, so the
workspace and the models a job needs are set once, when the worker starts;
the watermark model is loaded then, once per worker, not per copy.

A job has two steps: `check` (the clip may still be handed out, the recipient
is still active) and `make` (`deliveries.prepare_copies`: mark once, encode
in parallel, register every file in one transaction). A worker killed in the
middle of `make` leaves its job PENDING under its executor id, which names
its host and process (`copies@<host tag>:<pid>:<tag>`). Every worker writes a
heartbeat to the store every `RECOVER_EVERY_S` (table `worker_heartbeats`) and
then looks for PENDING jobs of dead workers: a process on its own host that no
longer runs, or, on any host, a worker whose heartbeat is older than
`DEAD_AFTER` (60 s) or missing. It hands their jobs back to the queue (DBOS
recovery: re-enqueued, so exactly one worker takes each); `make` runs again
and makes only what was not registered. A worker that was only slow, not dead,
and finishes the job too registers nothing twice: `deliveries` registers a
(delivery, format) once, inside the store's write lock. Temporary folders of
dead jobs are swept by `voxgate worker` (store.scratch).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
from datetime import datetime, timedelta
from typing import Any, Final

from dbos import DBOS
from sqlalchemy import delete, select

from pipeline.errors import StoreError, VoxgateError, map_exceptions
from pipeline.services.copy_jobs import (
    APP_NAME,
    QUEUE,
    STEPS_VERSION,
    WORKFLOW,
    active_distributors,
    system_database_url,
)
from pipeline.services.workspace import Workspace, utcnow
from pipeline.store.models import WorkerHeartbeatRow
from pipeline.store.scratch import host_tag, pid_alive

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY: Final = 1  # copy jobs at once per worker; each already encodes its formats in parallel
POLL_S: Final = 1.0  # how often an idle worker looks at the queue
RECOVER_EVERY_S: Final = 10.0  # how often a worker beats and looks for the jobs of dead workers
DEAD_AFTER: Final = timedelta(seconds=60)  # a worker silent this long is dead: its jobs go back to the queue
#: The workspace and models this process makes copies with (DBOS runs one application per process).
_RUNTIME: Final[dict[str, Any]] = {}


@DBOS.workflow(name=WORKFLOW)
def copy_job(clip_id: int, recipient: str, formats: list[str]) -> dict[str, Any]:
    """One recipient's copies of a released clip in `formats`: {"made": {format: sha256}, "refused": reason}."""
    refused = check_step(clip_id, recipient, formats)
    if refused is not None:
        return {"made": {}, "refused": refused}
    return {"made": make_step(clip_id, recipient, formats), "refused": None}


@DBOS.step(name="check")
def check_step(clip_id: int, recipient: str, formats: list[str]) -> str | None:
    """Why the copies must not be made now (revoked, consent ended, recipient gone), else None."""
    from pipeline.services.clips import check_hand_over

    ws, now = _RUNTIME["ws"], utcnow()
    if recipient not in active_distributors(ws, now):
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

    return prepare_copies(_RUNTIME["ws"], clip_id, recipient, tuple(formats), now=utcnow(), tools=_RUNTIME["tools"])


_EXECUTOR: Final = re.compile(r"^copies@(?P<host>[0-9a-f]{8}):(?P<pid>\d+):(?P<tag>[0-9a-f]+)$")
_PROCESS_TAG: Final = secrets.token_hex(4)  # tells apart two processes that got the same pid


def executor_id() -> str:
    """This process's id in the queue: its host and process, so others on the host can tell when it died."""
    return f"copies@{host_tag()}:{os.getpid()}:{_PROCESS_TAG}"


def dead_executors(executors: set[str], beats: dict[str, datetime], now: datetime) -> list[str]:
    """Those of `executors` that are dead: a process on this host that no longer runs, or any worker whose last
    heartbeat (`beats`) is older than `DEAD_AFTER` or missing (every worker beats before it takes a job)."""
    here = host_tag()

    def gone(name: str) -> bool:
        found = _EXECUTOR.match(name)
        return bool(found and found["host"] == here and not pid_alive(int(found["pid"])))

    return [name for name in sorted(executors) if name != executor_id()
            and (gone(name) or name not in beats or now - beats[name] > DEAD_AFTER)]


def beat(ws: Workspace, now: datetime) -> None:
    """Tell every machine this worker is alive (its row in `worker_heartbeats`)."""
    with ws.transaction() as s:
        row = s.get(WorkerHeartbeatRow, executor_id())
        if row is None:
            s.add(WorkerHeartbeatRow(executor_id=executor_id(), seen_at=now))
        else:
            row.seen_at = now


def heartbeats(ws: Workspace) -> dict[str, datetime]:
    """The last heartbeat of every worker that has one."""
    with ws.sessions() as s:
        return {row.executor_id: row.seen_at for row in s.scalars(select(WorkerHeartbeatRow))}


def recover_dead(ws: Workspace) -> list[str]:
    """Hand the copy jobs of dead workers back to the queue; the executors recovered."""
    pending = DBOS.list_workflows(status="PENDING", name=WORKFLOW, load_input=False, load_output=False)
    executors = {w.executor_id for w in pending if w.executor_id}
    dead = dead_executors(executors, heartbeats(ws), utcnow()) if executors else []
    if dead:
        DBOS._recover_pending_workflows(dead)  # re-enqueued: the queue's dequeue admits one runner each
        log.warning("took back the copy jobs of dead workers %s", ", ".join(dead))
    return dead


class CopyWorker:
    """Runs the copies queue in this process while entered (`with CopyWorker(ws, tools):`)."""

    def __init__(self, ws: Workspace, tools: Any, *, concurrency: int = DEFAULT_CONCURRENCY,
                 poll_s: float = POLL_S, recover_every_s: float = RECOVER_EVERY_S) -> None:
        if concurrency < 1:
            raise StoreError("--concurrency must be 1 or more copy jobs at once.")
        self.ws, self.tools, self.concurrency, self.poll_s = ws, tools, concurrency, poll_s
        self.recover_every_s = recover_every_s
        self._stop = threading.Event()
        self._recovery = threading.Thread(target=self._recover_loop, name="copies-recovery", daemon=True)

    def _recover_loop(self) -> None:
        while True:
            try:
                beat(self.ws, utcnow())
                recover_dead(self.ws)
            except Exception as exc:  # noqa: BLE001 - a busy database: look again at the next beat
                log.warning("could not beat or look for dead workers' copy jobs: %s", exc)
            if self._stop.wait(self.recover_every_s):
                return

    def __enter__(self) -> CopyWorker:
        if _RUNTIME:
            raise StoreError("This process already runs a copies queue; run one per process.")
        self.tools.presence_mark()  # the watermark model: loaded once per worker, before the first job
        beat(self.ws, utcnow())  # before it can take a job: a worker with jobs and no heartbeat is dead
        _RUNTIME.update(ws=self.ws, tools=self.tools)
        try:
            with map_exceptions({Exception: StoreError}, "The copies queue could not be started"):
                DBOS(config={"name": APP_NAME, "system_database_url": system_database_url(self.ws),
                             "executor_id": executor_id(), "application_version": STEPS_VERSION,
                             "log_level": "WARNING"})
                DBOS.launch()
                DBOS.register_queue(QUEUE, worker_concurrency=self.concurrency, polling_interval_sec=self.poll_s)
        except BaseException:
            _RUNTIME.clear()
            DBOS.destroy()
            raise
        self._recovery.start()
        log.info("copies queue running as %s (%d at once)", executor_id(), self.concurrency)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._recovery.join()
        DBOS.destroy()
        _RUNTIME.clear()
        try:  # stopped: a job it left unfinished goes to another worker at its next look, not 60 s later
            with self.ws.transaction() as s:
                s.execute(delete(WorkerHeartbeatRow).where(WorkerHeartbeatRow.executor_id == executor_id()))
        except VoxgateError as exc:
            log.warning("could not remove this worker's heartbeat (%s); it counts as dead in 60 s", exc)

