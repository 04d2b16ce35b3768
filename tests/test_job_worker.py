"""Which job workers are dead (services.job_worker.dead_executors): their jobs go back to the queue."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from pipeline.services.job_worker import DEAD_AFTER, dead_executors, executor_id
from pipeline.services.workspace import utcnow
from pipeline.store.scratch import host_tag


def test_dead_workers_are_processes_gone_from_this_host_or_workers_silent_past_the_limit() -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_here = f"voxgate@{host_tag()}:{int(finished.stdout)}:0a0a"  # its process exited: dead at once
    elsewhere = "voxgate@0badcafe:4242:1b1b"  # another machine: only its heartbeat tells
    now = utcnow()
    executors = {gone_here, elsewhere, executor_id()}
    fresh = {elsewhere: now - DEAD_AFTER + timedelta(seconds=5), gone_here: now, executor_id(): now}
    assert dead_executors(executors, fresh, now) == [gone_here]  # a fresh beat does not save a dead process
    stale = {**fresh, elsewhere: now - DEAD_AFTER - timedelta(seconds=1)}
    assert dead_executors(executors, stale, now) == sorted([gone_here, elsewhere])
    assert dead_executors({elsewhere}, {}, now) == [elsewhere]  # never beat: every worker beats before its first job
    assert dead_executors({executor_id()}, {}, now) == []  # never itself
