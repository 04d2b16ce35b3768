"""Copies ready before anyone asks: queued at release, made by a worker, served as they are.

One released clip for the module (one render). Its release queues jobs for the
clip's vertical picture and captions, and a copy job for each active
distributor; a real `voxgate worker --queues copies` process makes them, is
killed with SIGKILL in the middle of the video and again in the middle of a
copy, and started again; then downloads through the portal find the copies
made, and make nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import DEMO_VOICE, ORG, PEOPLE, REPO
from portal_fixtures import TEXT, serving
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.domain import Decision
from pipeline.services import review, statements, users, voices
from pipeline.services.copy_jobs import (
    PREPARED_DERIVED,
    PREPARED_FORMATS,
    copy_job_id,
    derived_job_id,
    enqueue_copies,
    job_states,
)
from pipeline.services.render import render_statement
from pipeline.services.tokens import issue_token
from pipeline.services.tools import Tools
from pipeline.services.workspace import init_workspace, utcnow
from pipeline.store.models import AuditRow, ClipFileRow, DeliveryFileRow, DeliveryRow

pytestmark = pytest.mark.slow
BOTH_DATABASES = True  # the queue's system database: a SQLite file in the workspace, or the workspace's PostgreSQL
DISTRIBUTORS = ("dana", "devi")  # both hold a live token at release
WAIT_S = 900  # generous: a loaded 2-core machine


@dataclass
class Module:
    ws: Any = None
    clip_id: int = 0
    tokens: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def released(tmp_path_factory, module_database_url):
    root = tmp_path_factory.mktemp("copy-jobs")
    ws, _ = init_workspace(root / "ws", ORG, now=utcnow(), database_url=module_database_url)
    for name, role in {**PEOPLE, "devi": "distributor", "dora": "distributor"}.items():
        users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    voices.add_voice(ws, DEMO_VOICE, actor="ops", now=utcnow())
    m = Module()
    m.ws, m.tokens = ws, {name: issue_token(ws, name, actor="ops", now=utcnow()) for name in DISTRIBUTORS}
    # dora is a distributor without a token at release: she gets hers on first request, later.
    sid = statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=TEXT, actor="sam", now=utcnow()).id
    review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
    review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
    m.clip_id = render_statement(ws, sid, Tools(), actor="rita", now=utcnow()).clip_id
    review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())  # the release: copies are queued
    return m


def _job_ids(m: Module, names=DISTRIBUTORS) -> list[str]:
    return [copy_job_id(m.clip_id, name, PREPARED_FORMATS) for name in names]


def _derived_ids(m: Module) -> list[str]:
    return [derived_job_id(m.clip_id, fmt) for fmt in PREPARED_DERIVED]


def _clip_files(m: Module) -> dict[str, str]:
    """The clip's own registered files: {format: sha256}."""
    with m.ws.sessions() as s:
        return {f.format: f.sha256 for f in s.scalars(select(ClipFileRow).where(ClipFileRow.clip_id == m.clip_id))}


def _copies(m: Module) -> dict[str, dict[str, str]]:
    """{recipient: {format: sha256}} as registered."""
    with m.ws.sessions() as s:
        rows = s.execute(select(DeliveryRow.recipient, DeliveryFileRow.format, DeliveryFileRow.sha256)
                         .join(DeliveryFileRow, DeliveryFileRow.delivery_id == DeliveryRow.id)
                         .where(DeliveryRow.clip_id == m.clip_id))
        out: dict[str, dict[str, str]] = {}
        for recipient, fmt, digest in rows:
            out.setdefault(recipient, {})[fmt] = digest
        return out


def _actions(m: Module) -> Counter:
    with m.ws.sessions() as s:
        return Counter(s.scalars(select(AuditRow.action)))


def _worker(m: Module) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "worker", "--queues", "copies", "--poll", "1",
                             "--home", str(m.ws.home)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(what, done, worker: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}) before {what}: {worker.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {WAIT_S} s")
        time.sleep(0.05)


def _stop(worker: subprocess.Popen) -> int:
    """Ctrl-C, as an operator stops it; its exit status (-9 if it had to be killed)."""
    worker.send_signal(signal.SIGINT)
    try:
        return worker.wait(timeout=120)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait()


def test_the_release_queues_copies_for_active_distributors_only_and_makes_none(released) -> None:
    asked = [*_job_ids(released, (*DISTRIBUTORS, "dora")), *_derived_ids(released)]
    states = {j.job_id: j.status for j in job_states(released.ws, asked)}
    assert set(states) == {*_job_ids(released), *_derived_ids(released)} and set(states.values()) == {"ENQUEUED"}
    assert _copies(released) == {}  # the release waited for nothing: no worker has run yet
    assert not set(PREPARED_DERIVED) & set(_clip_files(released))
    for path in released.ws.home.glob("jobs.sqlite*"):  # the queue is as private as the rest of the workspace
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    listed = _listed(released)
    assert {(j["clip"], j["recipient"], tuple(j["formats"]), j["status"]) for j in listed} == {
        *((released.clip_id, name, PREPARED_FORMATS, "ENQUEUED") for name in DISTRIBUTORS),
        *((released.clip_id, None, (fmt,), "ENQUEUED") for fmt in PREPARED_DERIVED)}
    assert all(j["worker"] in (None, "local") for j in listed)
    table = CliRunner().invoke(app, ["jobs", "copies", "--home", str(released.ws.home)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "Copy jobs" in table.output and "dana" in table.output


def _listed(m) -> list[dict[str, Any]]:
    """`voxgate jobs copies --json`, as an operator would look."""
    result = CliRunner().invoke(app, ["jobs", "copies", "--json", "--home", str(m.ws.home)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_enqueueing_the_same_copy_twice_makes_one_job(released) -> None:
    again = enqueue_copies(released.ws, released.clip_id, ["dana", "dana"])
    assert again == [_job_ids(released, ("dana",))[0]] * 2
    assert len(job_states(released.ws, _job_ids(released))) == len(DISTRIBUTORS)


def _kill_when(m: Module, what: str, folder: str, job: str) -> list:
    """Start a worker, SIGKILL it once `job` runs and a temporary folder `folder`-* is there; the folders it left.

    The worker makes one job at a time, so the folder is that job's.
    """
    worker = _worker(m)

    def running() -> bool:
        if not any(m.ws.home.glob(f"{folder}-*")):
            return False
        time.sleep(0.2)  # the queue is read at most 5 times a second
        return [j.status for j in job_states(m.ws, [job])] == ["PENDING"]

    try:
        _wait_for(what, running, worker)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    left = list(m.ws.home.glob(f"{folder}-{worker.pid}-*"))
    assert left, "the killed worker's temporary folder should still be there (it was killed, not stopped)"
    return left


def test_a_worker_killed_mid_video_and_mid_copy_finishes_both_on_restart_and_registers_no_half_file(released) -> None:
    m = released
    # The clip's own vertical picture is queued first: the worker is killed while making it.
    picture = derived_job_id(m.clip_id, "mp4-vertical")
    left = _kill_when(m, "video in progress", "voxgate-video", picture)
    assert [j.status for j in job_states(m.ws, [picture])] == ["PENDING"]  # killed with it begun and not finished
    assert "mp4-vertical" not in _clip_files(m) and _copies(m) == {}  # nothing half made was registered
    # Restarted, it finishes the picture; killed again in the middle of dana's copy.
    dana = _job_ids(m, ("dana",))[0]
    left += _kill_when(m, "copy in progress", "voxgate-copy", dana)
    assert [j.status for j in job_states(m.ws, [dana])] == ["PENDING"]
    assert "mp4-vertical" in _clip_files(m)
    for recipient, files in _copies(m).items():  # whatever was registered is whole: all of a copy or none
        assert set(files) == {*PREPARED_FORMATS, "ogg.c2pa"}, (recipient, files)
        for digest in files.values():
            m.ws.files.open_checked(digest)

    worker = _worker(m)
    ids = [*_derived_ids(m), *_job_ids(m)]
    try:
        _wait_for("jobs done", lambda: {j.status for j in job_states(m.ws, ids)} == {"SUCCESS"}, worker)
    finally:
        stopped = _stop(worker)
    assert stopped == 0, worker.stderr.read()[-3000:]  # Ctrl-C stops the queue cleanly
    assert not any(p.exists() for p in left)  # the dead jobs' folders were swept
    listed = _listed(m)
    assert {(j["recipient"], j["status"]) for j in listed} == {(name, "SUCCESS") for name in (*DISTRIBUTORS, None)}
    assert all(j["worker"] and j["error"] is None for j in listed)  # who made each, and nothing failed
    copies = _copies(m)
    assert set(copies) == set(DISTRIBUTORS)
    for recipient, files in copies.items():
        assert set(files) == {*PREPARED_FORMATS, "ogg.c2pa"}, (recipient, files)  # WAV, MP3: on request
        for digest in files.values():
            m.ws.files.open_checked(digest)
    own = _clip_files(m)
    for fmt in PREPARED_DERIVED:
        m.ws.files.open_checked(own[fmt])
    actions = _actions(m)
    assert actions["voxgate.clip.copy_made"] == len(DISTRIBUTORS)  # one copy each, none twice after the restarts
    assert actions["voxgate.clip.derived"] == len(PREPARED_DERIVED)  # the picture and captions once each
    assert actions["voxgate.clip.downloaded"] == 0  # nobody asked


def test_a_download_serves_the_ready_copy_and_makes_nothing(released) -> None:
    m = released
    made = _copies(m)["dana"]
    before = _actions(m)
    with serving(m.ws.home) as url:
        for fmt in PREPARED_FORMATS:
            request = urllib.request.Request(f"{url}/api/clips/{m.clip_id}/{fmt}",
                                             headers={"Authorization": f"Bearer {m.tokens['dana']}"})
            with urllib.request.urlopen(request, timeout=120) as response:
                assert hashlib.sha256(response.read()).hexdigest() == made[fmt]
    after = _actions(m)
    assert after["voxgate.clip.copy_made"] == before["voxgate.clip.copy_made"]  # nothing marked or encoded
    assert after["voxgate.clip.delivery_registered"] == before["voxgate.clip.delivery_registered"]
    assert after["voxgate.clip.downloaded"] == before["voxgate.clip.downloaded"] + len(PREPARED_FORMATS)
    assert _copies(m)["dana"] == made


def test_a_distributor_added_after_the_release_gets_theirs_on_first_request(released) -> None:
    m = released
    token = issue_token(m.ws, "dora", actor="ops", now=utcnow())
    with serving(m.ws.home) as url:
        request = urllib.request.Request(f"{url}/api/clips/{m.clip_id}/ogg", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=300) as response:
            body = response.read()
    assert hashlib.sha256(body).hexdigest() == _copies(m)["dora"]["ogg"]
    assert job_states(m.ws, _job_ids(m, ("dora",))) == []  # made on request, not queued


def test_the_portal_process_makes_queued_copies_too(released) -> None:
    """`voxgate serve` runs the copies queue in-process: a job queued while only the portal runs is made."""
    from ports import free_port

    m = released
    (job,) = enqueue_copies(m.ws, m.clip_id, ["devi"], ("wav",))  # devi's WAV: not among the prepared formats
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    portal = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "serve", "--port", str(free_port()),
                               "--home", str(m.ws.home)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        _wait_for("WAV copy", lambda: [j.status for j in job_states(m.ws, [job])] == ["SUCCESS"], portal)
    finally:
        _stop(portal)
    assert "wav" in _copies(m)["devi"]
    m.ws.files.open_checked(_copies(m)["devi"]["wav"])


def _other_machine() -> list[str] | None:
    """A command prefix that runs a process under another host name (a UTS namespace), or None if it cannot."""
    probe = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname voxgate-other"], capture_output=True)
    return None if probe.returncode else ["unshare", "--uts", "sh", "-c", 'hostname voxgate-other && exec "$@"', "-"]


def test_a_copy_job_of_a_worker_dead_on_another_machine_is_finished_here_once_its_heartbeat_stops(
        released, db_kind) -> None:
    """Issue 12: no heartbeat across hosts meant a dead machine's copy jobs waited for that machine."""
    if db_kind == "sqlite":
        pytest.skip("machines share a PostgreSQL store; an embedded SQLite workspace has one machine")
    prefix = _other_machine()
    if prefix is None:
        pytest.skip("`unshare --uts` is not permitted here, so no process can run under another host name")
    from pipeline.services.job_worker import DEAD_AFTER
    from pipeline.store.models import WorkerHeartbeatRow
    from pipeline.store.scratch import host_tag

    m, home = released, released.ws.home
    (job,) = enqueue_copies(m.ws, m.clip_id, ["dana"], ("mp3",))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    other = subprocess.Popen([*prefix, sys.executable, "-m", "pipeline.cli.main", "worker", "--queues", "copies",
                              "--poll", "1", "--home", str(home)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for("the other machine's copy under way", lambda: any(home.glob(f"voxgate-copy-{other.pid}-*"))
                  and [j.status for j in job_states(m.ws, [job])] == ["PENDING"], other)
        os.kill(other.pid, signal.SIGKILL)  # the machine is gone, mid-copy
        other.wait(timeout=60)
    finally:
        if other.poll() is None:
            other.kill()
    (state,) = job_states(m.ws, [job])
    assert state.status == "PENDING" and _host(state.executor) != host_tag()  # left to a worker on another host
    with m.ws.transaction() as s:  # a minute passes: its last heartbeat is now older than the limit
        s.get(WorkerHeartbeatRow, state.executor).seen_at = utcnow() - 2 * DEAD_AFTER
    worker = _worker(m)
    try:
        _wait_for("the job taken over", lambda: [j.status for j in job_states(m.ws, [job])] == ["SUCCESS"], worker)
    finally:
        assert _stop(worker) == 0, worker.stderr.read()[-3000:]
    (state,) = job_states(m.ws, [job])
    assert _host(state.executor) == host_tag()  # finished here
    m.ws.files.open_checked(_copies(m)["dana"]["mp3"])  # whole
    with m.ws.sessions() as s:
        dana = s.scalars(select(DeliveryRow.id).where(DeliveryRow.clip_id == m.clip_id,
                                                      DeliveryRow.recipient == "dana")).one()
        made = list(s.scalars(select(AuditRow).where(AuditRow.action == "voxgate.clip.copy_made")))
    assert sum("mp3" in e.data["files"] and e.data["delivery"] == dana for e in made) == 1  # registered once


def _host(executor: str | None) -> str:
    """The host tag in a job worker's executor id (`voxgate@<host>:<pid>:<tag>`)."""
    return (executor or "").partition("@")[2].partition(":")[0]
