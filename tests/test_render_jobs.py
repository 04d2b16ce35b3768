"""Render jobs across versions: a job another version of voxgate began is never resumed here step by step.

SQLite only: which version may resume a job is DBOS's rule, the same on either system database
(the resume itself runs on both in test_render_claims).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

from conftest import REPO
from sqlalchemy import select
from test_render_claims import approved, clips

from pipeline.services.job_worker import queue_client
from pipeline.services.workspace import utcnow
from pipeline.store.models import ClipRow

OLDER_VOXGATE = ("import pipeline.services.job_worker as w; w.JOBS_VERSION = 'voxgate-jobs-0'; "
                 "from pipeline.cli.main import app; app()")


def test_a_render_job_begun_by_another_version_is_never_resumed_and_its_claim_is_taken_over_once_it_lapses(
        workspace) -> None:
    sid = approved(workspace)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = ["render", str(sid), "--home", str(workspace.home), "--as", "rita"]
    older = subprocess.Popen([sys.executable, "-c", OLDER_VOXGATE, *args], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(workspace.home.glob("voxgate-render-*")):
            assert older.poll() is None and time.monotonic() < deadline, "the older version's render never started"
            time.sleep(0.1)
    finally:
        older.send_signal(signal.SIGKILL)
        older.wait()
    (held,) = clips(workspace)
    with workspace.transaction() as s:  # a minute passes: the dead render's lease runs out
        s.get(ClipRow, held.id).lease_until = utcnow() - timedelta(seconds=1)

    now = subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args], env=env, capture_output=True, text=True,
                         timeout=600)
    assert now.returncode == 0, now.stderr[-2000:]
    with queue_client(workspace) as client:
        jobs = {w.workflow_id: (w.status, w.app_version, w.executor_id)
                for w in client.list_workflows(workflow_id_prefix=f"render-{sid}-")}
    first, second = f"render-{sid}-r1-1", f"render-{sid}-r1-2"
    assert jobs[first][:2] == ("PENDING", "voxgate-jobs-0")  # left as it was: never resumed by this version
    assert held.worker.startswith(jobs[first][2]) and held.worker.endswith(first)
    assert jobs[second][0] == "SUCCESS"
    with workspace.sessions() as s:
        rows = [(c.id, c.state, c.worker.rpartition("/")[2]) for c in s.scalars(select(ClipRow).order_by(ClipRow.id))]
    assert rows == [(held.id, "failed", first), (rows[1][0], "draft", second)]  # the old claim fenced off
