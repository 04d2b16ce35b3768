"""The audit log: every step lands in a hash chain signed by the organisation; tampering is found."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.services import statements
from pipeline.services.auditing import audit_log, audit_verify
from pipeline.services.workspace import utcnow

runner = CliRunner()
BOTH_DATABASES = True


def _submit(ws, n: int = 1) -> None:
    for i in range(n):
        statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                          text=f"Statement number {i}.", actor="sam", now=utcnow())


def _sql(ws, query: str, **params) -> None:
    """What someone with write access to the database could do behind voxgate's back."""
    with ws.engine.begin() as con:
        con.execute(text(query), params)


def test_every_step_is_recorded_in_order(workspace) -> None:
    _submit(workspace)
    actions = [e.action for e in audit_log(workspace)]
    assert actions[0] == "voxgate.workspace.created"
    assert actions.count("voxgate.user.added") == 7
    assert actions[-3:] == ["voxgate.voice.added", "voxgate.consent.recorded", "voxgate.statement.submitted"]
    assert audit_verify(workspace).ok


def test_a_transaction_without_an_event_leaves_the_signed_head_as_it_was(workspace) -> None:
    """Heartbeats and render steps write every few seconds and record no event: nothing to sign again."""
    from pipeline.audit import stored_head
    from pipeline.store.models import UserRow

    _submit(workspace)
    published = workspace.head_path.read_bytes()
    written = workspace.head_path.stat()
    with workspace.sessions() as s:
        before = stored_head(s)
    with workspace.transaction() as s:
        s.get(UserRow, "sam").disabled_reason = None  # a write, but no event
    with workspace.sessions() as s:
        assert stored_head(s) == before
    assert workspace.head_path.stat() == written  # not even written again (the same bytes, a new file)
    _submit(workspace)  # an event moves it
    with workspace.sessions() as s:
        assert stored_head(s).seq == before.seq + 1
    assert workspace.head_path.read_bytes() != published and audit_verify(workspace).ok


def test_audit_verify_cli_reports_ok(workspace) -> None:
    result = runner.invoke(app, ["audit", "verify", "--home", str(workspace.home)])
    assert result.exit_code == 0 and "Audit log OK" in result.stdout


def test_altered_event_is_found(workspace) -> None:
    _submit(workspace)
    last = audit_log(workspace)[-1]
    _sql(workspace, "UPDATE audit_events SET data = :data WHERE seq = :seq",
         data=json.dumps({**last.data, "purpose": "advertising"}), seq=last.seq)
    report = audit_verify(workspace)
    assert not report.ok and report.first_bad_seq == last.seq and "altered" in report.problem
    result = runner.invoke(app, ["audit", "verify", "--home", str(workspace.home)])
    assert result.exit_code == 1 and f"event {last.seq}" in result.stderr


def test_removed_event_in_the_middle_is_found(workspace) -> None:
    _submit(workspace, 3)
    _sql(workspace, "DELETE FROM audit_events WHERE seq = 5")
    report = audit_verify(workspace)
    assert not report.ok and report.first_bad_seq == 5


def test_removed_events_at_the_end_are_found(workspace) -> None:
    _submit(workspace, 2)
    total = len(audit_log(workspace))
    _sql(workspace, "DELETE FROM audit_events WHERE seq = :seq", seq=total)
    report = audit_verify(workspace)
    assert not report.ok and "removed from the end" in report.problem


def test_reordered_events_are_found(workspace) -> None:
    _submit(workspace, 2)
    total = len(audit_log(workspace))
    # Swap the two last events' positions in the chain.
    _sql(workspace, "UPDATE audit_events SET seq = -1 WHERE seq = :seq", seq=total)
    _sql(workspace, "UPDATE audit_events SET seq = :new WHERE seq = :old", new=total, old=total - 1)
    _sql(workspace, "UPDATE audit_events SET seq = :new WHERE seq = -1", new=total - 1)
    report = audit_verify(workspace)
    assert not report.ok and report.first_bad_seq == total - 1


def test_rehashed_event_without_the_org_key_is_found(workspace) -> None:
    """An attacker who recomputes the hash chain still cannot sign it."""
    from pipeline.audit.log import event_hash

    _submit(workspace)
    last = audit_log(workspace)[-1]
    data = {**last.data, "channel": "tv"}
    h = event_hash(last.seq, last.at, last.actor, last.action, last.subject, data, last.prev_hash)
    _sql(workspace, "UPDATE audit_events SET data = :data, hash = :hash WHERE seq = :seq", data=json.dumps(data), hash=h,
         seq=last.seq)
    report = audit_verify(workspace)
    assert not report.ok and "invalid signature" in report.problem


@pytest.mark.parametrize("as_json", [True, False])
def test_audit_log_lists_events(workspace, as_json) -> None:
    result = runner.invoke(app, ["audit", "log", "--home", str(workspace.home), *(["--json"] if as_json else [])],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0
    if as_json:
        events = json.loads(result.stdout)
        assert events[0]["action"] == "voxgate.workspace.created" and len(events[0]["hash"]) == 64
    else:
        assert "voxgate.consent.recorded" in result.stdout


APPENDER = """
import sys
from pathlib import Path
from pipeline.services.workspace import open_workspace, utcnow
ws = open_workspace(Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    with ws.transaction() as s:
        ws.record(s, "voxgate.test.appended", actor=sys.argv[2], subject=str(i), now=utcnow())
"""


def test_four_processes_appending_at_once_extend_one_chain(workspace) -> None:
    """Concurrent writers (separate processes, as workers on several machines are) are serialised: no fork, no
    duplicate, no gap."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    before = len(audit_log(workspace))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(workspace.home), f"worker-{n}", "15"], env=env,
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    events = audit_log(workspace)
    assert [e.seq for e in events] == list(range(1, before + 61))
    assert len({e.hash for e in events}) == len(events)
    assert all(e.prev_hash == p.hash for p, e in zip(events, events[1:]))
    mine = [(e.actor, int(e.subject)) for e in events[before:]]
    for n in range(4):
        assert [i for actor, i in mine if actor == f"worker-{n}"] == list(range(15))
    assert audit_verify(workspace).ok


def test_a_reader_is_not_blocked_by_a_writer_holding_the_lock(workspace) -> None:
    """Reads open deferred transactions: while another connection holds the write lock, listing still answers
    (it used to open BEGIN IMMEDIATE too, and failed with "database is locked" after the 10 s busy timeout)."""
    with workspace.writes.begin() as s:  # holds BEGIN IMMEDIATE / the advisory lock until the block ends
        s.connection()
        assert audit_log(workspace, limit=1)[0].action == "voxgate.consent.recorded"
        assert audit_verify(workspace).ok
