"""Insider attacks on the rows (issue 10, part 2): edits to the real SQLite file, with no key, move no gate.

Each test replays one attack that succeeded on main and shows it refused or reported. Every gate reads
the signed records (approvals, the consent record, revocation records) checked against the signed
audit head; the state columns are only a cache for listing.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DEMO_VOICE, ORG, PEOPLE, own_model_profile, store_snapshot
from pipeline.cli.main import app
from pipeline.domain import Decision
from pipeline.errors import ApprovalError, ConsentError, EngineError
from pipeline.portal.app import released_clips
from pipeline.services import clips, review, statements, users, voices
from pipeline.services.render import render_statement
from pipeline.services.tools import Tools
from pipeline.services.verify import verify_file
from pipeline.services.workspace import Workspace, init_workspace, open_workspace, utcnow
from pipeline.verify.verdict import Outcome

pytestmark = pytest.mark.slow
runner = CliRunner()
TEXT = "We ask for an open trial, and we thank everyone who stood with us."


@dataclass(frozen=True)
class Insider:
    root: Path
    released: int  # a released clip in the demo voice
    draft: int  # a rendered draft in the demo voice, never signed off
    draft_statement: int
    revoked: int  # a released clip in voice "second", whose consent was then revoked
    revoked_file: Path  # its MP3 as exported before the revocation
    draft_file: Path  # the draft's MP3, taken from the file store
    second_profile: Path  # the profile "second" was added from (its own model)


@pytest.fixture(scope="module")
def insider(tmp_path_factory: pytest.TempPathFactory) -> Insider:
    root = tmp_path_factory.mktemp("insider")
    ws, _ = init_workspace(root / "ws", ORG, now=utcnow())
    for name, role in PEOPLE.items():
        users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    voices.add_voice(ws, DEMO_VOICE, actor="ops", now=utcnow())
    second = own_model_profile(root, "second")
    voices.add_voice(ws, second, actor="ops", now=utcnow())
    tools = Tools()

    def rendered(voice: str, text: str) -> tuple[int, int]:
        sid = statements.submit(ws, voice_id=voice, purpose="public-statement", channel="social", language="en",
                                text=text, actor="sam", now=utcnow()).id
        review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
        review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
        return sid, render_statement(ws, sid, tools, actor="rita", now=utcnow()).clip_id

    sid, released = rendered("demo", TEXT)
    review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())
    draft_sid, draft = rendered("demo", "Our lawyers will speak to the press on Monday, after the hearing.")
    sid, revoked = rendered("second", "Please share this message with everyone who stood with us this year.")
    review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())
    out = root / "out"
    out.mkdir()
    revoked_file = clips.export_clip(ws, revoked, "mp3", out, actor="dana", now=utcnow())
    with ws.sessions() as s:
        from pipeline.store.models import ClipRow

        mp3 = next(f for f in s.get(ClipRow, draft).files if f.format == "mp3")
    draft_file = out / "draft.mp3"
    shutil.copy(ws.files.open_checked(mp3.sha256), draft_file)
    voices.revoke_consent(ws, "second", "the owner withdrew consent", actor="joe-delegate", now=utcnow())
    return Insider(root, released, draft, draft_sid, revoked, revoked_file, draft_file, second)


def copy_of(insider: Insider, tmp_path: Path) -> Workspace:
    """A private copy of the insider's workspace, so each attack starts from the same store."""
    shutil.copytree(insider.root / "ws", tmp_path / "ws")
    return open_workspace(tmp_path / "ws")


def sql(ws: Workspace, *queries: str) -> None:
    """What an insider with the database file and no key can do."""
    con = sqlite3.connect(ws.home / "voxgate.db")
    for q in queries:
        con.execute(q)
    con.commit()
    con.close()


def cli(ws: Workspace, *args: str, user: str | None = None):
    return runner.invoke(app, [*args, "--home", str(ws.home), *(["--as", user] if user else [])])


def refused(ws: Workspace, *args: str, user: str | None, match: str) -> None:
    before = store_snapshot(ws.home)
    result = cli(ws, *args, user=user)
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert "Traceback" not in err and match in err, err
    assert store_snapshot(ws.home) == before, "a refused command changed the store"


def test_unrevoking_with_three_sql_updates_moves_no_gate(insider, tmp_path) -> None:
    ws = copy_of(insider, tmp_path)
    sql(ws, "UPDATE consents SET revoked_at = NULL, revoked_by = NULL, revoked_reason = NULL WHERE voice_id = 'second'",
        "UPDATE voices SET state = 'ready' WHERE id = 'second'",
        f"UPDATE clips SET state = 'released', revoked_at = NULL WHERE id = {insider.revoked}")
    listed = {c["id"] for c in released_clips(ws)}  # the portal's listing
    assert insider.revoked not in listed and insider.released in listed
    with pytest.raises(ConsentError, match="revoked"):  # the portal's download (and every hand-over)
        clips.open_download(ws, insider.revoked, "mp3", actor="dana", now=utcnow())
    out = tmp_path / "out"
    out.mkdir()
    refused(ws, "clips", "export", str(insider.revoked), "--format", "mp3", "--out", str(out), user="dana",
            match="revoked")
    report = verify_file(ws, insider.revoked_file, now=utcnow())
    assert report.verdict.outcome is Outcome.REVOKED
    text = tmp_path / "new.txt"
    text.write_text("A new statement in a voice whose owner said no.")
    refused(ws, "submit", str(text), "--voice", "second", "--purpose", "public-statement", "--channel", "social",
            user="sam", match="was revoked")
    replay = cli(ws, "audit", "verify", "--replay")
    assert replay.exit_code == 1
    for row in (f"clip {insider.revoked}", "voice second", "of voice second"):
        assert row in replay.stderr, replay.stderr
    # The control: the demo voice, which speaks with another model, is untouched.
    assert clips.export_clip(ws, insider.released, "mp3", out, actor="dana", now=utcnow()).is_file()


def test_a_consent_row_without_its_signed_record_is_invalid(insider, tmp_path) -> None:
    ws = copy_of(insider, tmp_path)
    sql(ws, "UPDATE consents SET record_json = NULL, "
            "purposes = '[\"advertising\", \"press-release\", \"public-statement\"]' WHERE voice_id = 'demo'")
    text = tmp_path / "ad.txt"
    text.write_text("Buy the new phone today.")
    refused(ws, "submit", str(text), "--voice", "demo", "--purpose", "advertising", "--channel", "social",
            user="sam", match="no signed record")
    with pytest.raises(ConsentError, match="no signed record"):
        clips.export_clip(ws, insider.released, "mp3", tmp_path, actor="dana", now=utcnow())
    assert insider.released not in {c["id"] for c in released_clips(ws)}


def test_a_draft_marked_released_by_sql_stays_a_draft(insider, tmp_path) -> None:
    ws = copy_of(insider, tmp_path)
    sql(ws, f"UPDATE clips SET state = 'released', released_at = created_at WHERE id = {insider.draft}",
        f"UPDATE statements SET state = 'released' WHERE id = {insider.draft_statement}")
    assert insider.draft not in {c["id"] for c in released_clips(ws)}
    assert insider.draft not in {c.id for c in clips.list_clips(ws)}
    out = tmp_path / "out"
    out.mkdir()
    refused(ws, "clips", "export", str(insider.draft), "--format", "mp3", "--out", str(out), user="dana",
            match="audio sign-off")
    report = verify_file(ws, insider.draft_file, now=utcnow())
    assert report.verdict.outcome is Outcome.UNRELEASED and report.clip.text is None
    replay = cli(ws, "audit", "verify", "--replay")
    assert replay.exit_code == 1 and f"clip {insider.draft}: the row says released" in replay.stderr


@pytest.mark.parametrize("owner", [None, "Somebody Else"])  # the admin may also write another owner's name
def test_a_revoked_model_cannot_come_back_under_another_id(insider, tmp_path, owner) -> None:
    ws = copy_of(insider, tmp_path)
    folder = tmp_path / "again"
    shutil.copytree(insider.second_profile, folder)
    toml = (folder / "voice.toml").read_text().replace('id = "second"', 'id = "second-again"')
    if owner:
        toml = toml.replace('owner = "Joe Example"', f'owner = "{owner}"')
    (folder / "voice.toml").write_text(toml)
    refused(ws, "voice", "add", str(folder), user="ops", match="cannot be added again under any id")
    # The demo voice speaks with another model: it is not touched by the revocation.
    statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                      text="Still here.", actor="sam", now=utcnow())


def test_removing_the_last_events_and_the_head_file_is_found(insider, tmp_path) -> None:
    ws = copy_of(insider, tmp_path)
    total = cli(ws, "audit", "verify", "--json")
    events = json.loads(total.stdout)["events"]
    sql(ws, f"DELETE FROM audit_events WHERE seq > {events - 2}")
    ws.head_path.unlink()
    result = cli(ws, "audit", "verify")
    assert result.exit_code == 1 and "removed from the end" in result.stderr
    sql(ws, "DELETE FROM audit_head")  # and the database's own head
    result = cli(ws, "audit", "verify")
    assert result.exit_code == 1 and "signed audit head is missing" in result.stderr
    with pytest.raises(ConsentError, match="signed audit head is missing"):  # the gates refuse too
        clips.export_clip(ws, insider.released, "mp3", tmp_path, actor="dana", now=utcnow())


def test_a_published_head_catches_a_restored_older_database(insider, tmp_path) -> None:
    ws = copy_of(insider, tmp_path)
    sql(ws, "PRAGMA wal_checkpoint(TRUNCATE)")  # the whole database in its one file, to copy
    old_db, old_head = (ws.home / "voxgate.db").read_bytes(), ws.head_path.read_bytes()
    statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                      text="A statement the insider wants to make disappear.", actor="sam", now=utcnow())
    published = tmp_path / "published-head.json"
    head = cli(ws, "audit", "head")
    assert head.exit_code == 0 and json.loads(head.stdout)["kind"] == "voxgate.audit-head/1"
    published.write_text(head.stdout)
    assert cli(ws, "audit", "verify", "--head", str(published)).exit_code == 0
    sql(ws, "PRAGMA wal_checkpoint(TRUNCATE)")
    ws.engine.dispose()
    for suffix in ("-wal", "-shm"):
        (ws.home / f"voxgate.db{suffix}").unlink(missing_ok=True)
    (ws.home / "voxgate.db").write_bytes(old_db)  # the whole workspace rolled back, head file too
    ws.head_path.write_bytes(old_head)
    assert cli(ws, "audit", "verify").exit_code == 0  # consistent in itself: only a copy kept elsewhere tells
    result = cli(ws, "audit", "verify", "--head", str(published))
    assert result.exit_code == 1 and "removed from the end" in result.stderr


@pytest.mark.parametrize(("column", "value"), [
    ("at", "not a timestamp"),  # crashed the reader with a ValueError traceback on main
    ("data", "{not json"),  # crashed it with a JSONDecodeError traceback
])
def test_a_tampered_row_is_reported_not_a_traceback(insider, tmp_path, column, value) -> None:
    ws = copy_of(insider, tmp_path)
    con = sqlite3.connect(ws.home / "voxgate.db")
    con.execute(f"UPDATE audit_events SET {column} = ? WHERE seq = 3", (value,))
    con.commit()
    con.close()
    result = cli(ws, "audit", "verify")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "event 3" in result.stderr and "Traceback" not in result.output
    as_json = json.loads(cli(ws, "audit", "verify", "--json").stdout)
    assert as_json["first_bad_seq"] == 3 and not as_json["ok"]


def test_deleting_a_request_for_changes_is_caught_at_the_next_gate(insider, tmp_path) -> None:
    ws = copy_of(insider, tmp_path)
    sid = insider.draft_statement
    review.decide(ws, sid, Decision.REQUEST_CHANGES, comment="too fast", actor="ravi", now=utcnow())
    sql(ws, f"DELETE FROM approvals WHERE statement_id = {sid} AND decision = 'request_changes'",
        f"UPDATE statements SET state = 'draft_ready' WHERE id = {sid}",
        f"UPDATE clips SET state = 'draft' WHERE id = {insider.draft}")
    with pytest.raises(ApprovalError, match="requests for changes"):
        review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
    assert "requests for changes" in cli(ws, "audit", "verify").stderr


def test_deleting_a_revocation_record_is_caught_at_the_next_gate(insider, tmp_path) -> None:
    ws = copy_of(insider, tmp_path)
    sql(ws, "DELETE FROM revocations",
        "UPDATE consents SET revoked_at = NULL, revoked_by = NULL, revoked_reason = NULL WHERE voice_id = 'second'",
        "UPDATE voices SET state = 'ready' WHERE id = 'second'",
        f"UPDATE clips SET state = 'released', revoked_at = NULL WHERE id = {insider.revoked}")
    with pytest.raises(ConsentError, match="revocation records differ"):
        clips.export_clip(ws, insider.revoked, "mp3", tmp_path, actor="dana", now=utcnow())
    assert insider.revoked not in {c["id"] for c in released_clips(ws)}
    assert verify_file(ws, insider.revoked_file, now=utcnow()).verdict.outcome is not Outcome.AUTHENTIC
    # An honest write afterwards does not absorb the deletion into the head.
    users.add_user_from_keys(ws, "newcomer", "reviewer", actor="ops", now=utcnow())
    with pytest.raises(ConsentError, match="revocation records differ"):
        statements.submit(ws, voice_id="second", purpose="public-statement", channel="social", language="en",
                          text="Back again.", actor="sam", now=utcnow())


def test_a_changed_piper_config_is_refused_at_render(workspace, tmp_path) -> None:
    voices.add_voice(workspace, own_model_profile(tmp_path, "tuned"), actor="ops", now=utcnow())
    sid = statements.submit(workspace, voice_id="tuned", purpose="public-statement", channel="social", language="en",
                            text=TEXT, actor="sam", now=utcnow()).id
    review.decide(workspace, sid, Decision.APPROVE, actor="rita", now=utcnow())
    review.decide(workspace, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
    config = next(tmp_path.glob("voice-*/model.onnx.json"))
    data = json.loads(config.read_text())
    data["inference"]["length_scale"] = 1.6  # slower speech, a different voice: not what was consented to
    config.write_text(json.dumps(data))
    with pytest.raises(EngineError, match="or its config"):
        render_statement(workspace, sid, Tools(), actor="rita", now=utcnow())
    assert statements.show_statement(workspace, sid).state == "text_approved"
