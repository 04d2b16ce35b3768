"""Render jobs killed with SIGKILL: resumed on their own claim by this version, never by another version.

SQLite only: resuming is DBOS's recovery plus the store's fenced claims, and the
claims run on both databases in test_render_claims; four workers on PostgreSQL
are in test_workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

from conftest import REPO
from test_render_claims import approved, clips

from pipeline.services.auditing import audit_log, audit_verify
from pipeline.services.job_worker import queue_client
from pipeline.services.render import claimable, job_of
from pipeline.services.workspace import utcnow
from pipeline.store.models import ClipRow

OLDER_VOXGATE = ("import pipeline.services.job_worker as w; w.JOBS_VERSION = 'voxgate-jobs-0'; "
                 "from pipeline.cli.main import app; app()")


def test_a_killed_render_job_is_resumed_by_this_version_on_its_own_claim_and_never_by_another_version(
        workspace) -> None:
    """Issue 12. An older voxgate's render is killed: this version leaves its job alone and, once the claim's
    lease ran out, claims the statement afresh (fencing the old clip off). That render is killed too, while
    producing, and the next `voxgate render --all` resumes its job at once (its process is gone from this host)
    on the same claim, though its lease has not run out, from the stored premaster: not synthesised again."""
    sid = approved(workspace)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = ["render", str(sid), "--home", str(workspace.home), "--as", "rita"]
    older = _killed_while_producing(workspace, [sys.executable, "-c", OLDER_VOXGATE, *args], env)
    (first,) = clips(workspace)
    with workspace.transaction() as s:  # a minute passes: the older render's lease runs out
        s.get(ClipRow, first.id).lease_until = utcnow() - timedelta(seconds=1)

    command = [sys.executable, "-m", "pipeline.cli.main", *args]
    killed = _killed_while_producing(workspace, command, env, at_step="export")  # the produce step's first stage
    killed_at_ms = time.time() * 1000
    held = clips(workspace)[-1]
    assert held.state == "rendering" and held.worker.split(":")[1] == str(killed.pid)
    assert claimable(workspace, utcnow()) == []  # its lease has not run out: nobody reclaims it

    again = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "render", "--all", *args[2:]], env=env,
                           capture_output=True, text=True, timeout=600)  # --all: renders left by dead workers too
    assert again.returncode == 0, again.stderr[-2000:]
    with queue_client(workspace) as client:
        jobs = {w.workflow_id: (w.status, w.app_version, w.executor_id)
                for w in client.list_workflows(workflow_id_prefix=f"render-{sid}-")}
    old_job, job = f"render-{sid}-r1-1", f"render-{sid}-r1-2"
    assert jobs[old_job][:2] == ("PENDING", "voxgate-jobs-0")  # left as it was: never resumed by this version
    assert first.worker == f"{jobs[old_job][2]}/{old_job}" and str(older.pid) in first.worker
    assert jobs[job][0] == "SUCCESS"
    with queue_client(workspace) as client:
        steps = client.list_workflow_steps(job, load_output=False)
    assert [x["function_name"] for x in steps] == ["claim", "synthesise", "produce", "register"]  # each once
    synthesised, produced = steps[1], steps[2]
    assert synthesised["completed_at_epoch_ms"] < killed_at_ms < produced["completed_at_epoch_ms"]
    assert [(c.id, c.state, job_of(c.worker)) for c in clips(workspace)] == [
        (first.id, "failed", old_job), (held.id, "draft", job)]  # resumed on its claim: no third clip
    assert clips(workspace)[-1].worker.split(":")[1] not in (str(killed.pid), str(older.pid))
    actions = Counter(e.action for e in audit_log(workspace))
    assert actions["voxgate.statement.render_claimed"] == 2 and actions["voxgate.statement.rendered"] == 1
    assert actions["voxgate.statement.render_failed"] == 1  # the older claim, fenced off when it lapsed
    assert not list(workspace.home.glob("voxgate-render-*"))  # the dead processes' folders were swept
    assert audit_verify(workspace).ok


def _killed_while_producing(workspace, command: list[str], env: dict[str, str],
                            at_step: str | None = None) -> subprocess.Popen:
    """Start a render process and SIGKILL it once it works in its temporary folder (claimed, synthesising), or
    once its clip reached the stage `at_step`."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (_at_step(workspace, proc.pid, at_step) if at_step else _has_folder(workspace, proc.pid)):
            assert proc.poll() is None and time.monotonic() < deadline, "the render never got there"
            time.sleep(0.05)
        if at_step is None:
            time.sleep(1.0)  # into the render's steps
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc


def _has_folder(workspace, pid: int) -> bool:
    return bool(list(workspace.home.glob(f"voxgate-render-{pid}-*")))


def _at_step(workspace, pid: int, step: str) -> bool:
    """Whether the process `pid` holds a render claim at the stage `step`."""
    return any(c.state == "rendering" and c.worker.split(":")[1] == str(pid) and c.step == step
               for c in clips(workspace))
