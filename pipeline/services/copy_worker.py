"""The copies queue's worker: DBOS runs the copy jobs (`services.copy_jobs`) in this process.

`voxgate worker` (with `--queues copies`, the default) and `voxgate serve`
run one `CopyWorker` each. DBOS holds one application per process, so the
workspace and the models a job needs are set once, when the worker starts;
the watermark model is loaded then, once per worker, not per copy.

A job has two steps: `check` (the clip may still be handed out, the recipient
is still active) and `make` (`deliveries.prepare_copies`: mark once, encode
in parallel, register every file in one transaction). A worker killed in the
middle of `make` leaves its job PENDING under its executor id; the same
worker restarted (same host and role, hence the same id) recovers it, and
`make` runs again, making only what was not registered. Its temporary folder
is swept by `voxgate worker` (store.scratch).
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Final

from dbos import DBOS

from pipeline.errors import StoreError, VoxgateError, map_exceptions
from pipeline.services.copy_jobs import APP_NAME, QUEUE, STEPS_VERSION, WORKFLOW, active_distributors, system_database_url
from pipeline.services.workspace import Workspace, utcnow

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY: Final = 1  # copy jobs at once per worker; each already encodes its formats in parallel
POLL_S: Final = 1.0  # how often an idle worker looks at the queue
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


def executor_id(role: str) -> str:
    """This worker's id in the queue: host and role, so the same worker restarted recovers its own jobs."""
    return f"{socket.gethostname()}-{role}"


class CopyWorker:
    """Runs the copies queue in this process while entered (`with CopyWorker(ws, tools, role="worker"):`)."""

    def __init__(self, ws: Workspace, tools: Any, *, role: str, concurrency: int = DEFAULT_CONCURRENCY,
                 poll_s: float = POLL_S) -> None:
        if concurrency < 1:
            raise StoreError("--concurrency must be 1 or more copy jobs at once.")
        self.ws, self.tools, self.role, self.concurrency, self.poll_s = ws, tools, role, concurrency, poll_s

    def __enter__(self) -> CopyWorker:
        if _RUNTIME:
            raise StoreError("This process already runs a copies queue; run one per process.")
        self.tools.presence_mark()  # the watermark model: loaded once per worker, before the first job
        _RUNTIME.update(ws=self.ws, tools=self.tools)
        try:
            with map_exceptions({Exception: StoreError}, "The copies queue could not be started"):
                DBOS(config={"name": APP_NAME, "system_database_url": system_database_url(self.ws),
                             "executor_id": executor_id(self.role), "application_version": STEPS_VERSION,
                             "log_level": "WARNING"})
                DBOS.launch()
                DBOS.register_queue(QUEUE, worker_concurrency=self.concurrency, polling_interval_sec=self.poll_s)
        except BaseException:
            _RUNTIME.clear()
            DBOS.destroy()
            raise
        log.info("copies queue running as %s (%d at once)", executor_id(self.role), self.concurrency)
        return self

    def __exit__(self, *_exc: object) -> None:
        DBOS.destroy()
        _RUNTIME.clear()

