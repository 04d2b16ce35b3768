"""Public verification off the portal's event loop: a bounded pool of worker processes, each job watched.

One upload of 20 minutes of 6 kbps Opus once held every distributor's request
for 56 s and peaked at 4.2 GB (issue 11). Here a check runs in a separate
process that keeps its models loaded between jobs; the portal only waits on a
pipe. Each job has a time limit and a memory bound: the worker's resident size
is read from /proc ten times a second and the worker is killed past either
(an address-space limit would break torch, which maps far more than it
uses). A killed worker is replaced on the next job. At most `workers` jobs
run and `queue` more wait; anything beyond is refused at once as busy.

Public checks are counted, not recorded one by one: `CheckCounter` writes one
audit event per flush with how many checks gave which verdict, so a flood of
uploads costs the audit log (and its fsync) once a minute, not once a check.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from pipeline.errors import VoxgateError

log = logging.getLogger(__name__)
MB: Final = 1 << 20
#: Decoding is capped: a check reads the first 10 minutes of audio and says so.
MAX_AUDIO_S: Final = 600.0
COUNT_EVERY_S: Final = 60.0
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")
#: Public checks yield the CPU: a worker runs one thread at this niceness, so however many uploads arrive,
#: distributors' downloads and reviewers' pages are scheduled first (issue 11: download p99 under hostile
#: uploads within 2x of idle).
WORKER_NICENESS: Final = 10


class PoolBusy(VoxgateError):
    """Every worker is busy and the queue is full: try again shortly."""


class JobRefused(VoxgateError):
    """A check ran past its time limit or memory bound and was stopped."""


@dataclass(frozen=True)
class PoolLimits:
    workers: int = 1  # a 2-core machine: one check at a time leaves a core to the downloads
    queue: int = 4
    timeout_s: float = 90.0
    #: Resident size of one worker. Measured: `voxgate verify` of a 43 s clip peaks at 250-300 MB (no
    #: Perth); the 10-minute cap adds ~40 MB of 16 kHz samples (and as much again while decoding).
    max_rss_bytes: int = 800 * MB
    max_audio_s: float = MAX_AUDIO_S


def resident_bytes(pid: int) -> int:
    """Resident set size of a live process (Linux /proc), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, home: Path, limits: PoolLimits) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads (uvicorn's)
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(str(home), child, limits.max_audio_s), daemon=True,
                                   name="voxgate-verify")
        self.process.start()
        child.close()
        self.limits = limits
        self.peak_rss = 0

    def run(self, path: Path) -> dict[str, Any]:
        """Send one job and wait for its answer, watching time and memory; kill the worker past either."""
        self.conn.send(str(path))
        deadline = time.monotonic() + self.limits.timeout_s
        while not self.conn.poll(0.1):
            rss = resident_bytes(self.process.pid)
            self.peak_rss = max(self.peak_rss, rss)
            if rss > self.limits.max_rss_bytes:
                self.kill()
                raise JobRefused(f"The check needed more than {self.limits.max_rss_bytes // MB} MB and was stopped; "
                                 "send a shorter excerpt of the clip.")
            if time.monotonic() > deadline:
                self.kill()
                raise JobRefused(f"The check took longer than {self.limits.timeout_s:.0f} s and was stopped; "
                                 "send a shorter excerpt of the clip.")
            if not self.process.is_alive():
                raise JobRefused("The check failed unexpectedly; try again.")
        status, value = self.conn.recv()
        if status == "error":
            raise VoxgateError(value)
        return value

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)

    @property
    def alive(self) -> bool:
        return self.process.is_alive()


def _serve(home: str, conn: Any, max_audio_s: float) -> None:
    """The worker: verify each path it is sent and answer with the public verdict object."""
    os.nice(WORKER_NICENESS)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy and torch load
        os.environ[var] = "1"
    from pipeline.services.verify import verify_file
    from pipeline.services.workspace import open_workspace, utcnow

    # No presence model: the mark is a claim that never changes the verdict, and Perth alone is ~800 MB.
    ws = open_workspace(Path(home))
    while True:
        try:
            path = conn.recv()
        except EOFError:
            return
        try:
            report = verify_file(ws, Path(path), now=utcnow(), record=False, max_audio_s=max_audio_s)
            conn.send(("ok", report.as_dict(public=True)))
        except VoxgateError as exc:
            conn.send(("error", str(exc)))


class VerifyPool:
    """Run checks in worker processes: bounded, time-limited, memory-bounded."""

    def __init__(self, home: Path, limits: PoolLimits | None = None) -> None:
        self.home = home
        self.limits = limits or PoolLimits()
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.limits.workers)
        self._admitted = 0

    def start(self) -> None:
        """Start the workers now (they load their models), so the first check does not wait for them."""
        with self._lock:
            while len(self._idle) < self.limits.workers:
                self._idle.append(_Worker(self.home, self.limits))

    async def check(self, path: Path) -> dict[str, Any]:
        """The public verdict object for `path`; PoolBusy at once when the queue is full."""
        with self._lock:
            if self._admitted >= self.limits.workers + self.limits.queue:
                raise PoolBusy("Too many checks are running; try again in a minute.")
            self._admitted += 1
        try:
            return await asyncio.to_thread(self._run, path)
        finally:
            with self._lock:
                self._admitted -= 1

    def _run(self, path: Path) -> dict[str, Any]:
        with self._slots:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None or not worker.alive:
                worker = _Worker(self.home, self.limits)
            try:
                return worker.run(path)
            finally:
                if worker.alive:
                    with self._lock:
                        self._idle.append(worker)

    def close(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
        for w in workers:
            w.conn.close()
            w.kill()


class CheckCounter:
    """Public checks counted in memory and written to the audit log as one event per flush."""

    def __init__(self, every_s: float = COUNT_EVERY_S) -> None:
        self.every_s = every_s
        self._counts: Counter[str] = Counter()
        self._since: datetime | None = None
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def add(self, verdict: str, now: datetime) -> bool:
        """Count one check; True when a flush is due."""
        with self._lock:
            self._counts[verdict] += 1
            self._since = self._since or now
            return time.monotonic() - self._last >= self.every_s

    def flush(self, ws: Any, now: datetime) -> int:
        """Write what was counted since the last flush as one `voxgate.verify.counted` event; how many checks."""
        with self._lock:
            counts, since = dict(self._counts), self._since
            self._counts.clear()
            self._since, self._last = None, time.monotonic()
        total = sum(counts.values())
        if total:
            with ws.transaction() as s:
                ws.record(s, "voxgate.verify.counted", actor="public", subject="public-checks",
                          data={"checks": total, "verdicts": counts, "since": since.isoformat(timespec="seconds"),
                                "until": now.isoformat(timespec="seconds")}, now=now)
        return total
