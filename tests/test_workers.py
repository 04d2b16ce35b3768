"""Exactly once: four worker processes share one queue of 40 statements, on SQLite and on PostgreSQL.

Each worker is a real `voxgate render --all` process with its own models,
as on separate machines, each running the `render` queue while it waits:
every process asks for every statement, and the job ids (one per statement
and attempt), the queue and the fenced claims keep them apart. Every statement must be rendered exactly once,
every clip serial be unique, and the audit log stay one valid chain.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import select

from conftest import REPO
from pipeline.domain import Decision
from pipeline.services import review, statements
from pipeline.services.auditing import audit_log, audit_verify
from pipeline.services.workspace import utcnow
from pipeline.store.models import ClipRow, StatementRow

pytestmark = pytest.mark.slow
BOTH_DATABASES = True
WORKERS = 4
STATEMENTS = 40


def test_four_workers_render_forty_statements_exactly_once(workspace, db_kind) -> None:
    count = STATEMENTS
    ids = []
    for n in range(count):
        sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social",
                                language="en", text=f"Message number {n + 1}: we ask for a fair and public trial.",
                                actor="sam", now=utcnow()).id
        review.decide(workspace, sid, Decision.APPROVE, actor="rita", now=utcnow())
        review.decide(workspace, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
        ids.append(sid)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}  # four processes on a small machine: one thread each
    workers = [subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "render", "--all", "--home",
                                 str(workspace.home), "--as", "rita"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(WORKERS)]
    for worker in workers:
        assert worker.wait(timeout=1800) == 0, worker.stderr.read()[-2000:]

    with workspace.sessions() as s:
        states = Counter(s.scalars(select(StatementRow.state)))
        clips = list(s.scalars(select(ClipRow)))
    assert states == {"draft_ready": count}
    assert sorted(c.statement_id for c in clips) == ids  # one clip per statement: none twice, none failed
    assert {c.state for c in clips} == {"draft"} and len({c.id for c in clips}) == count
    assert len({c.audio_sha256 for c in clips}) == count  # each serial marked into its own audio
    actions = Counter(e.action for e in audit_log(workspace))
    assert actions["voxgate.statement.render_claimed"] == actions["voxgate.statement.rendered"] == count
    assert actions["voxgate.statement.render_failed"] == 0
    assert audit_verify(workspace).ok


def test_a_live_worker_takes_over_the_render_of_a_dead_one(workspace, tmp_path) -> None:
    """A claim whose lease ran out (its worker died a minute ago) is rendered by `voxgate worker` unprompted.

    The worker is started as a background process is (SIGINT ignored, as a shell's `&` and many service managers
    leave it) and stopped with SIGTERM, as a service manager stops it: it must stop cleanly all the same. Its
    secrets (organisation, watermark and C2PA keys) come from its own folder, as on a worker machine whose
    copy of the workspace has no keys/.
    """
    import shutil
    import signal
    import time
    from datetime import timedelta

    from pipeline.services.render import LEASE, _claim
    from pipeline.services.workspace import SECRETS_ENV

    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text="We ask for a fair and public trial.", actor="sam", now=utcnow()).id
    review.decide(workspace, sid, Decision.APPROVE, actor="rita", now=utcnow())
    review.decide(workspace, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
    _claim(workspace, sid, actor="rita", now=utcnow() - LEASE - timedelta(seconds=1), worker="dead-host:1:gone")
    secrets = tmp_path / "worker-secrets"
    shutil.move(workspace.home / "keys", secrets)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           SECRETS_ENV: str(secrets)}
    worker = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "worker", "--poll", "1", "--home",
                               str(workspace.home), "--as", "ravi"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 600
        while statements.show_statement(workspace, sid).state != "draft_ready":
            assert worker.poll() is None and time.monotonic() < deadline, worker.stderr.read()[-2000:]
            time.sleep(1)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=120)
        shutil.move(secrets, workspace.home / "keys")
    assert worker.returncode == 0 and "Worker stopped" in out
    with workspace.sessions() as s:
        assert [(c.state, c.worker.split(":")[1]) for c in s.scalars(select(ClipRow).order_by(ClipRow.id))] == [
            ("failed", "1"), ("draft", str(worker.pid))]
    assert audit_verify(workspace).ok
