"""Render claims: one worker per statement, a lease that lapses when its worker dies, and a fence against the old one.

Runs on SQLite and PostgreSQL. The claims are exercised without synthesis
(the claim, lease and register steps are store operations); real render
processes killed with SIGKILL are in test_render_jobs.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import store_snapshot
from pipeline.domain import Decision
from pipeline.errors import TransitionError
from pipeline.services import review, statements
from pipeline.services.auditing import audit_log, audit_verify
from pipeline.services.render import (
    LEASE,
    Produced,
    _claim,
    _release_claim,
    adopt,
    claimable,
    register,
    renew_lease,
)
from pipeline.services.workspace import utcnow
from pipeline.store.models import ClipRow

BOTH_DATABASES = True
TEXT = "We ask for a fair and public trial."


def approved(ws, text: str = TEXT) -> int:
    sid = statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=text, actor="sam", now=utcnow()).id
    review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
    review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
    return sid


def stored(ws, folder: Path) -> Produced:
    """A produced render's stand-in: two small files in the file store (the claims need no synthesis)."""
    files = {}
    for fmt in ("wav", "premaster"):
        files[fmt] = folder / f"{fmt}.bin"
        files[fmt].write_bytes(f"{fmt} of {folder.name}".encode())
    return Produced({}, {}, {}, {fmt: ws.files.put(path) for fmt, path in files.items()},
                    {fmt: path.stat().st_size for fmt, path in files.items()})


def clips(ws) -> list[ClipRow]:
    with ws.sessions() as s:
        return list(s.scalars(select(ClipRow).order_by(ClipRow.id)))


def test_two_workers_never_claim_the_same_statement(workspace) -> None:
    sid = approved(workspace)
    _claim(workspace, sid, actor="rita", now=utcnow(), worker="a")
    before = store_snapshot(workspace.home)
    with pytest.raises(TransitionError, match="being rendered"):
        _claim(workspace, sid, actor="ravi", now=utcnow(), worker="b")
    assert store_snapshot(workspace.home) == before


def test_a_claim_whose_lease_ran_out_is_reclaimed_and_the_old_clip_failed(workspace) -> None:
    sid = approved(workspace)
    t0 = utcnow()
    old_clip, _ = _claim(workspace, sid, actor="rita", now=t0, worker="dead-worker")  # and then it dies
    assert claimable(workspace, t0 + LEASE - timedelta(seconds=1)) == []  # still held
    later = t0 + LEASE + timedelta(seconds=1)
    assert claimable(workspace, later) == [sid]
    new_clip, _ = _claim(workspace, sid, actor="ravi", now=later, worker="live-worker")
    assert [(c.id, c.state, c.worker) for c in clips(workspace)] == [
        (old_clip, "failed", "dead-worker"), (new_clip, "rendering", "live-worker")]
    failed = [e for e in audit_log(workspace) if e.action == "voxgate.statement.render_failed"]
    assert failed[-1].data["reason"] == "worker dead-worker stopped renewing its lease"
    assert audit_verify(workspace).ok


def test_a_renewed_lease_keeps_the_claim(workspace) -> None:
    sid = approved(workspace)
    t0 = utcnow()
    clip, _ = _claim(workspace, sid, actor="rita", now=t0, worker="a")
    assert renew_lease(workspace, clip, "a", t0 + timedelta(seconds=50)) is None
    assert claimable(workspace, t0 + LEASE + timedelta(seconds=1)) == []
    assert claimable(workspace, t0 + timedelta(seconds=50) + LEASE + timedelta(seconds=1)) == [sid]


def test_a_slow_worker_whose_claim_was_taken_over_cannot_register_or_undo_it(workspace, tmp_path) -> None:
    """The fence: after a takeover the old worker's clip is failed; its register, renewal and failure change nothing."""
    sid = approved(workspace)
    t0 = utcnow()
    slow, _ = _claim(workspace, sid, actor="rita", now=t0, worker="slow")
    later = t0 + LEASE + timedelta(seconds=1)
    fresh, _ = _claim(workspace, sid, actor="ravi", now=later, worker="fresh")
    assert "no longer this worker's render" in renew_lease(workspace, slow, "slow", later)
    produced = stored(workspace, tmp_path)
    before = store_snapshot(workspace.home)
    with pytest.raises(TransitionError, match="taken over by another worker"):
        register(workspace, sid, slow, produced, actor="rita", now=later, worker="slow")
    _release_claim(workspace, sid, slow, "RuntimeError: late", now=later, worker="slow")
    assert store_snapshot(workspace.home) == before  # the live render is untouched
    assert statements.show_statement(workspace, sid).state == "rendering"
    assert [(c.id, c.state) for c in clips(workspace)] == [(slow, "failed"), (fresh, "rendering")]


def test_a_render_jobs_claim_passes_to_the_worker_resuming_that_job_and_to_no_other(workspace, tmp_path) -> None:
    """A render job's claim (`<worker>/<job>`) is taken over as it stands by whichever worker resumes the job:
    the same clip, one claim in the audit log. Another job, or the worker that ran it before, gets nothing."""
    sid = approved(workspace)
    t0 = utcnow()
    first, _ = _claim(workspace, sid, actor="rita", now=t0, worker="w1/render-1-r1-1")  # claimed, then w1 died
    again, job = _claim(workspace, sid, actor="rita", now=t0, worker="w2/render-1-r1-1")  # its claim step, again
    assert again == first and job.worker == "w2/render-1-r1-1"
    assert adopt(workspace, first, "w3/render-1-r1-1", "rita", t0).worker == "w3/render-1-r1-1"  # w2 died too
    before = store_snapshot(workspace.home)
    with pytest.raises(TransitionError, match="no longer this job's"):
        adopt(workspace, first, "w4/render-1-r1-2", "rita", t0)  # another job of the same statement
    with pytest.raises(TransitionError, match="being rendered"):
        _claim(workspace, sid, actor="ravi", now=t0, worker="w4/render-1-r1-2")
    produced = stored(workspace, tmp_path)
    with pytest.raises(TransitionError, match="taken over by another worker"):
        register(workspace, sid, first, produced, actor="rita", now=t0, worker="w2/elsewhere")  # not even a job
    _release_claim(workspace, sid, first, "late", now=t0, worker="w4/render-1-r1-2")
    assert store_snapshot(workspace.home) == before
    register(workspace, sid, first, produced, actor="rita", now=t0, worker="w3/render-1-r1-1")
    registered = store_snapshot(workspace.home)
    register(workspace, sid, first, produced, actor="rita", now=t0, worker="w5/render-1-r1-1")  # resumed once more
    assert store_snapshot(workspace.home) == registered  # registered once
    assert [(c.id, c.state) for c in clips(workspace)] == [(first, "draft")]
    actions = [e.action for e in audit_log(workspace) if e.subject == str(sid)]
    assert actions.count("voxgate.statement.render_claimed") == actions.count("voxgate.statement.rendered") == 1
    assert audit_verify(workspace).ok


def test_the_store_refuses_a_second_live_clip_for_a_revision(workspace) -> None:
    """Whatever a worker believes, a revision has at most one live clip (the unique index of migration 0010)."""
    from sqlalchemy.exc import IntegrityError

    sid = approved(workspace)
    clip_id, _ = _claim(workspace, sid, actor="rita", now=utcnow(), worker="a")
    with workspace.sessions() as s:
        first = s.get(ClipRow, clip_id)
        twin = ClipRow(**{c.key: getattr(first, c.key) for c in ClipRow.__table__.columns if c.key != "id"})
    with pytest.raises(IntegrityError), workspace.writes.begin() as s:
        s.add(twin)


def test_jobs_list_and_show_name_the_worker_the_attempt_and_the_error(workspace) -> None:
    import json

    from typer.testing import CliRunner

    from pipeline.cli.main import app
    from pipeline.services.render_jobs import request_renders

    sid = approved(workspace)
    t0 = utcnow()
    _claim(workspace, sid, actor="rita", now=t0, worker="host-a:1:x")
    _claim(workspace, sid, actor="ravi", now=t0 + LEASE + timedelta(seconds=1), worker="host-b:2:y")
    runner = CliRunner()
    shown = runner.invoke(app, ["jobs", "show", str(sid), "--json", "--home", str(workspace.home)])
    assert shown.exit_code == 0, shown.output
    jobs = json.loads(shown.stdout)
    assert [(j["attempt"], j["status"], j["worker"]) for j in jobs] == [
        (2, "running", "host-b:2:y"), (1, "failed", "host-a:1:x")]
    assert jobs[1]["error"] == "worker host-a:1:x stopped renewing its lease" and jobs[0]["error"] is None
    listed = runner.invoke(app, ["jobs", "list", "--home", str(workspace.home)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "host-b:2:y" in listed.stdout
    waiting = approved(workspace, TEXT + " Again.")
    assert request_renders(workspace, [waiting], "rita") == {waiting: f"render-{waiting}-r1-1"}  # no worker runs
    queued = runner.invoke(app, ["jobs", "show", str(waiting), "--json", "--home", str(workspace.home)])
    assert json.loads(queued.stdout) == [{"job": f"render-{waiting}-r1-1", "statement": waiting, "status": "queued"}]
    listed = json.loads(runner.invoke(app, ["jobs", "list", "--json", "--home", str(workspace.home)]).stdout)
    assert [(j["statement"], j["status"]) for j in listed] == [(waiting, "queued"), (sid, "running"), (sid, "failed")]
    missing = runner.invoke(app, ["jobs", "show", "99", "--home", str(workspace.home)])
    assert missing.exit_code == 1 and "never been rendered" in missing.stderr


def test_render_of_a_statement_another_worker_holds_follows_its_steps_to_the_end(workspace, tmp_path,
                                                                                   monkeypatch) -> None:
    """Issue 12: `voxgate render ID` shows the render's progress whichever worker runs it, and its outcome."""
    import json
    import threading

    from typer.testing import CliRunner

    from pipeline.cli.main import app
    from pipeline.services import jobs
    from pipeline.services.render import note_step

    polls = [threading.Semaphore(0)]  # released at each look the follower takes (the real listing, counted)
    real_list_jobs = jobs.list_jobs

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = real_list_jobs(*args, **kwargs)
        polls[0].release()
        return found

    monkeypatch.setattr(jobs, "list_jobs", counted)
    produced = stored(workspace, tmp_path)
    runner, gpu, outcomes = CliRunner(), "gpu-1:7:a", {}
    for ending, text in (("done", TEXT), ("fails", TEXT + " Again, in public.")):
        sid = approved(workspace, text)
        clip, _ = _claim(workspace, sid, actor="rita", now=utcnow(), worker=gpu)
        note_step(workspace, clip, gpu, "watermark")
        (shown,) = json.loads(runner.invoke(app, ["jobs", "show", str(sid), "--json", "--home",
                                                  str(workspace.home)]).stdout)
        assert (shown["status"], shown["step"], shown["worker"]) == ("running", "watermark", gpu)
        looks = polls[0] = threading.Semaphore(0)

        def other_worker(sid: int = sid, clip: int = clip, ending: str = ending,
                         looks: threading.Semaphore = looks) -> None:
            for _ in range(3):  # the follower is following: it found the job and looked twice more
                assert looks.acquire(timeout=60)
            note_step(workspace, clip, gpu, "export")
            if ending == "done":
                register(workspace, sid, clip, produced, actor="rita", now=utcnow(), worker=gpu)
            else:
                _release_claim(workspace, sid, clip, "RuntimeError: CUDA out of memory", now=utcnow(), worker=gpu)

        thread = threading.Thread(target=other_worker)
        thread.start()
        outcomes[ending] = runner.invoke(app, ["render", str(sid), "--home", str(workspace.home), "--as", "ravi"])
        thread.join(60)
    done, fails = outcomes["done"], outcomes["fails"]
    assert done.exit_code == 0, done.output
    assert f"being rendered by worker {gpu}" in done.stdout and f"rendered by {gpu}: clip" in done.stdout
    assert fails.exit_code == 1 and "CUDA out of memory" in fails.stderr and "Traceback" not in fails.output
    assert [c.worker for c in clips(workspace)] == [gpu, gpu]  # the follower rendered nothing itself
