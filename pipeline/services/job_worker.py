"""The job queues' worker: DBOS runs render jobs (`services.render_jobs`) and copy jobs (`services.copy_jobs`).

`voxgate worker` (queues `render` and `copies` by default), `voxgate render`
(the `render` queue, while it waits for its statements) and `voxgate serve`
(`copies`) each run one `JobWorker`. DBOS holds one application per process,
so the workspace and the models a job needs are set once, when the worker
starts; the watermark model is loaded then, once per worker, not per job.

The job queue lives in a system database beside the store: `<home>/jobs.sqlite`
for an embedded workspace, the workspace's own PostgreSQL (schema `dbos`) when
`[database] url` names one.

A worker killed in the middle of a job leaves it PENDING under its executor
id, which names its host and process (`voxgate@<host tag>:<pid>:<tag>`). Every
worker writes a heartbeat to the store every `RECOVER_EVERY_S` (table
`worker_heartbeats`) and then looks for PENDING jobs of dead workers: a process
on its own host that no longer runs, or, on any host, a worker whose heartbeat
is older than `DEAD_AFTER` or missing. So a dead worker's jobs go back to the
queue at the next look of a live worker (within 5 s on its own host, within
50 s of its last heartbeat on any other), and exactly one worker takes each
(DBOS recovery re-enqueues them). The job then resumes after its last finished
step; its steps are idempotent, and fenced so that a worker that was only slow,
not dead, registers nothing twice. Temporary folders of dead jobs are swept by
`voxgate worker` and `voxgate render` (store.scratch).

Jobs carry the version of the steps that began them (`JOBS_VERSION`): a worker
recovers only its own version's jobs, so new code never resumes an older
version's job step by step.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final

from dbos import DBOS
from sqlalchemy import delete, select

from pipeline.errors import StoreError, VoxgateError, map_exceptions
from pipeline.services.workspace import Workspace, utcnow
from pipeline.store.db import sqlite_url
from pipeline.store.files import PRIVATE_MODE
from pipeline.store.models import WorkerHeartbeatRow
from pipeline.store.scratch import host_tag, pid_alive

log = logging.getLogger(__name__)

APP_NAME: Final = "voxgate"
SYSTEM_DATABASE_FILE: Final = "jobs.sqlite"
#: The job steps' version: bump it when the steps change, so a worker never resumes a job an older
#: version began, step by step (DBOS recovers only its own application version's workflows).
JOBS_VERSION: Final = "voxgate-jobs-4"
QUEUES: Final = ("render", "copies")
RENDERS_AT_ONCE: Final = 1  # renders at once per worker: one per GPU (or per machine on CPU)
POLL_S: Final = 1.0  # how often an idle worker looks at its queues
RECOVER_EVERY_S: Final = 5.0  # how often a worker beats and looks for the jobs of dead workers
DEAD_AFTER: Final = timedelta(seconds=45)  # a worker silent this long is dead: its jobs go back to the queue
#: The workspace and models this process runs jobs with (DBOS runs one application per process).
RUNTIME: Final[dict[str, Any]] = {}


def _embedded(ws: Workspace) -> bool:
    return not (ws.config.database_url or "").startswith("postgresql")


def has_queue(ws: Workspace) -> bool:
    """Whether the workspace has a job queue yet (a workspace that never queued a job has no system database)."""
    return not _embedded(ws) or (ws.home / SYSTEM_DATABASE_FILE).exists()


def system_database_url(ws: Workspace) -> str:
    """Where the job queue lives: the workspace's PostgreSQL, or a SQLite file in the workspace (made 0600 first,
    as everything in a workspace is; SQLite gives its journal files the same mode)."""
    if not _embedded(ws):
        return ws.config.database_url
    path = ws.home / SYSTEM_DATABASE_FILE
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_MODE))
    os.chmod(path, PRIVATE_MODE)
    return sqlite_url(path)


@contextmanager
def queue_client(ws: Workspace) -> Iterator[Any]:
    """A DBOS client on the workspace's system database (its tables created if this is the first job)."""
    from dbos import DBOSClient

    with map_exceptions({Exception: StoreError}, "The job queue could not be opened"):
        client = DBOSClient(system_database_url=system_database_url(ws), application_name=APP_NAME)
        try:
            client._sys_db.run_migrations()  # a client never migrates; a release may come before any worker
        except BaseException:
            client.destroy()
            raise
    try:
        yield client
    finally:
        client.destroy()


_EXECUTOR: Final = re.compile(r"^voxgate@(?P<host>[0-9a-f]{8}):(?P<pid>\d+):(?P<tag>[0-9a-f]+)$")
_PROCESS_TAG: Final = secrets.token_hex(4)  # tells apart two processes that got the same pid


def executor_id() -> str:
    """This process's id in the queues: its host and process, so others on the host can tell when it died."""
    return f"voxgate@{host_tag()}:{os.getpid()}:{_PROCESS_TAG}"


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
    """Hand the jobs of dead workers back to their queues; the executors recovered."""
    pending = DBOS.list_workflows(status="PENDING", app_version=JOBS_VERSION, load_input=False, load_output=False)
    executors = {w.executor_id for w in pending if w.executor_id}
    dead = dead_executors(executors, heartbeats(ws), utcnow()) if executors else []
    if dead:
        DBOS._recover_pending_workflows(dead)  # re-enqueued: the queue's dequeue admits one runner each
        log.warning("took back the jobs of dead workers %s", ", ".join(dead))
    return dead


class _StderrNow(logging.StreamHandler):  # type: ignore[type-arg]
    """DBOS's log lines to whatever `sys.stderr` is when they are written (DBOS's own handler keeps the stream
    it found first: in one process that runs commands one after another, a closed one)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _dbos_logs_to_stderr() -> None:
    dbos_log = logging.getLogger("dbos")
    if not dbos_log.handlers:  # DBOS adds its console handler only where there is none
        dbos_log.propagate = False
        dbos_log.addHandler(_StderrNow())


class JobWorker:
    """Runs `queues` in this process while entered (`with JobWorker(ws, tools, queues=("copies",)):`)."""

    def __init__(self, ws: Workspace, tools: Any, *, queues: tuple[str, ...] = QUEUES, concurrency: int = 1,
                 poll_s: float = POLL_S, recover_every_s: float = RECOVER_EVERY_S) -> None:
        if concurrency < 1:
            raise StoreError("--concurrency must be 1 or more copy jobs at once.")
        self.ws, self.tools, self.queues, self.concurrency = ws, tools, queues, concurrency
        self.poll_s, self.recover_every_s = poll_s, recover_every_s
        self._stop = threading.Event()
        self._recovery = threading.Thread(target=self._recover_loop, name="jobs-recovery", daemon=True)

    def _recover_loop(self) -> None:
        while not self._stop.wait(self.recover_every_s):
            self._beat_and_recover()

    def _beat_and_recover(self) -> None:
        try:
            beat(self.ws, utcnow())
            recover_dead(self.ws)
        except Exception as exc:  # noqa: BLE001 - a busy database: look again at the next beat
            log.warning("could not beat or look for dead workers' jobs: %s", exc)

    def __enter__(self) -> JobWorker:
        # The workflows register with DBOS on import, before it launches.
        import pipeline.services.copy_jobs  # noqa: F401
        import pipeline.services.render_jobs  # noqa: F401

        if RUNTIME:
            raise StoreError("This process already runs a job worker; run one per process.")
        self.tools.presence_mark()  # the watermark model: loaded once per worker, before the first job
        beat(self.ws, utcnow())  # before it can take a job: a worker with jobs and no heartbeat is dead
        RUNTIME.update(ws=self.ws, tools=self.tools)
        _dbos_logs_to_stderr()
        try:
            with map_exceptions({Exception: StoreError}, "The job queues could not be started"):
                DBOS(config={"name": APP_NAME, "system_database_url": system_database_url(self.ws),
                             "executor_id": executor_id(), "application_version": JOBS_VERSION,
                             "log_level": "WARNING"})
                DBOS.listen_queues(list(self.queues))  # queues live in the system database: take only ours
                DBOS.launch()
                for queue in self.queues:
                    DBOS.register_queue(queue, polling_interval_sec=self.poll_s,
                                        worker_concurrency=RENDERS_AT_ONCE if queue == "render" else self.concurrency)
        except BaseException:
            RUNTIME.clear()
            DBOS.destroy()
            raise
        self._beat_and_recover()  # a job this host's dead processes left: taken back before waiting for the loop
        self._recovery.start()
        log.info("job queues %s running as %s", ", ".join(self.queues), executor_id())
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._recovery.join()
        DBOS.destroy()
        RUNTIME.clear()
        try:  # stopped: a job it left unfinished goes to another worker at its next look, not 45 s later
            with self.ws.transaction() as s:
                s.execute(delete(WorkerHeartbeatRow).where(WorkerHeartbeatRow.executor_id == executor_id()))
        except VoxgateError as exc:
            log.warning("could not remove this worker's heartbeat (%s); it counts as dead in 45 s", exc)
