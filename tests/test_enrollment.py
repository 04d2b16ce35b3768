"""Enrollment end to end: the script, the owner's reading checked against it, the signed record, and its life after.

Speech is real: the packaged Piper voice reads the script and the training
sentences; the "different speaker" is that voice shifted 5 semitones (see
conftest.STRANGER_SEMITONES). Generated audio is cached for the session, and one
enrolled workspace is built per module and copied for each test that needs it.
Tests that synthesise, recognise or embed speech are marked slow (`make test` runs them).
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ENROLL_SENTENCES, ORG, PEOPLE, store_snapshot
from pipeline.cli.main import app
from pipeline.consent.certificate import render_certificate
from pipeline.errors import ConsentError, InputError, NotFoundError, PermissionError_
from pipeline.hashing import sha256_file
from pipeline.services import statements
from pipeline.services.auditing import audit_log, audit_verify
from pipeline.services.consent_certificate import consent_details
from pipeline.services.consent_renewal import renew_consent
from pipeline.services.consent_scripts import create_script
from pipeline.services.enrollment import enroll
from pipeline.services.recordings import Recording, enrolled_recordings, read_recordings
from pipeline.services.users import add_user_from_keys
from pipeline.services.voices import revoke_consent, show_voice
from pipeline.services.workspace import init_workspace, open_workspace, utcnow

runner = CliRunner()


def new_script(ws, voice: str = "joe", seed: int = 1, **changes):
    terms = dict(owner="Joe Example", organisation=ORG, purposes=["public-statement,press-release"],
                 channels=["social", "messaging"], languages=["en"], valid_until=date(2030, 12, 31),
                 policy="per_statement", delegates=["joe-delegate"], owner_account="joe")
    return create_script(ws, voice, **{**terms, **changes}, actor="ops", now=utcnow(), rng=random.Random(seed))


def make_workspace(home: Path):
    ws, _ = init_workspace(home, ORG, now=utcnow())
    for name, role in {**PEOPLE, "joe": "owner"}.items():
        add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    return ws


@pytest.fixture(scope="module")
def enrolled_home(tmp_path_factory, enrollment_audio, check_tools) -> Path:
    """A workspace in which the owner Joe Example enrolled voice "joe" (per statement, delegate joe-delegate)."""
    ws = make_workspace(tmp_path_factory.mktemp("enrolled") / "ws")
    script = new_script(ws)
    enroll(ws, "joe", enrollment_audio.recordings(), enrollment_audio.reading(script.text), actor="ops",
           now=utcnow(), tools=check_tools)
    ws.engine.dispose()
    return ws.home


@pytest.fixture
def enrolled(enrolled_home: Path, tmp_path: Path):
    home = tmp_path / "ws"
    shutil.copytree(enrolled_home, home)
    return open_workspace(home)


@pytest.fixture
def fresh(tmp_path: Path):
    return make_workspace(tmp_path / "ws")


# --- the proven path ----------------------------------------------------------------------


@pytest.mark.slow
def test_enroll_a_new_voice_through_the_cli(fresh, enrollment_audio) -> None:
    home = ["--home", str(fresh.home), "--as", "ops"]
    result = runner.invoke(app, ["consent", "script", "joe", "--owner", "Joe Example", "--org", ORG,
                                 "--purposes", "public-statement,press-release", "--channels", "social",
                                 "--languages", "en", "--valid-until", "2030-12-31", "--policy", "per_statement",
                                 "--delegates", "joe-delegate", "--owner-account", "joe", "--json", *home])
    assert result.exit_code == 0, result.output
    script = json.loads(result.stdout)
    assert script["text"].startswith("My name is Joe Example.") and script["challenge"] in script["text"].replace(",", "")

    result = runner.invoke(app, ["voice", "enroll", "joe", "--recordings", str(enrollment_audio.recordings()),
                                 "--consent-audio", str(enrollment_audio.reading(script["text"])), *home])
    assert result.exit_code == 0, result.output
    assert "Enrolled voice joe (enrolled, new)" in " ".join(result.stdout.split())
    assert "signed by ops, joe" in " ".join(result.stdout.split())

    voice, consent = show_voice(fresh, "joe")
    assert voice.state == "enrolled" and voice.model_sha256 == "" and consent.kind == "enrollment"
    d = consent_details(fresh, "joe", now=utcnow())
    assert d["consent"]["verified"] and d["consent"]["status"] == "active"
    assert [(s["signer"], s["capacity"], s["valid"]) for s in d["signatures"]] == [("ops", "witness", True),
                                                                                   ("joe", "owner", True)]
    checks = {c["name"]: c for c in d["enrollment"]["checks"]}
    assert checks["word error rate"]["figure"] <= 0.15 and checks["speaker similarity"]["figure"] >= 0.8
    assert all(c["passed"] for c in checks.values())
    # The files it relies on are kept in the workspace, byte for byte.
    kept = fresh.home / d["enrollment"]["folder"]
    assert sha256_file(kept / d["enrollment"]["consent_audio"]["name"]) == d["enrollment"]["consent_audio"]["sha256"]
    actions = [e.action for e in audit_log(fresh)]
    for action in ("voxgate.consent.script_created", "voxgate.voice.enrolled", "voxgate.consent.enrolled"):
        assert action in actions
    assert audit_verify(fresh).ok


@pytest.mark.slow
def test_enrolled_recordings_are_the_kept_copies_with_their_transcripts(enrolled) -> None:
    recordings = enrolled_recordings(enrolled, "joe")
    assert [r.transcript for r in recordings] == list(ENROLL_SENTENCES)
    for r in recordings:
        assert isinstance(r, Recording) and r.path.is_relative_to(enrolled.home)
        assert sha256_file(r.path) == r.sha256
    with pytest.raises(Exception):  # frozen: nobody can point a Recording elsewhere after the fact
        recordings[0].path = Path("/tmp/x.wav")  # type: ignore[misc]


@pytest.mark.slow
def test_a_voice_only_enrolled_has_no_model_and_a_profile_voice_no_recordings(enrolled) -> None:
    from pipeline.services.voices import add_voice
    from conftest import DEMO_VOICE

    add_voice(enrolled, DEMO_VOICE, actor="ops", now=utcnow())
    assert enrolled_recordings(enrolled, "demo") == []  # consent from a profile covers no recordings
    sid = statements.submit(enrolled, voice_id="joe", purpose="public-statement", channel="social", language="en",
                            text="We ask for a fair trial.", actor="sam", now=utcnow()).id
    from pipeline.domain import Decision
    from pipeline.errors import EngineError
    from pipeline.services import review
    from pipeline.services.render import render_statement
    from pipeline.services.tools import Tools

    review.decide(enrolled, sid, Decision.APPROVE, actor="rita", now=utcnow())
    assert review.decide(enrolled, sid, Decision.APPROVE, actor="joe", now=utcnow()).state == "text_approved"
    with pytest.raises(EngineError, match="no usable model yet"):
        render_statement(enrolled, sid, Tools(), actor="rita", now=utcnow())


# --- refusals: one line, the figure, the store unchanged ---------------------------------------


@pytest.mark.slow
def test_a_different_speaker_is_refused_through_the_cli(fresh, enrollment_audio) -> None:
    script = new_script(fresh, seed=2)
    before = store_snapshot(fresh.home)
    result = runner.invoke(app, ["voice", "enroll", "joe", "--recordings", str(enrollment_audio.recordings()),
                                 "--consent-audio", str(enrollment_audio.reading(script.text, "stranger")),
                                 "--home", str(fresh.home), "--as", "ops"])
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert "\n" not in err and "Enrollment refused: speaker similarity 0." in err and "needs >= 0.8" in err, err
    assert store_snapshot(fresh.home) == before
    assert not (fresh.home / "voices" / "joe").exists()


def drop_challenge(text: str) -> str:
    return text[: text.index(" My challenge words are")]


@pytest.mark.parametrize(
    ("reading", "match"),
    [
        pytest.param(lambda a, text: a.reading(drop_challenge(text)), "challenge phrase heard missing",
                     id="no-challenge", marks=pytest.mark.slow),
        pytest.param(lambda a, text: a.reading(text.replace("Joe Example", "Maria Lopez")),
                     "name 'Joe Example' heard not heard", id="wrong-name", marks=pytest.mark.slow),
        pytest.param(lambda a, text: a.write(np.zeros(22_050 * 20, np.float32), 22_050, "silent.wav"),
                     "consent audio silence", id="silent"),
        pytest.param(lambda a, text: a.write(np.clip(a.speak(text)[0] * 8, -1, 1), 22_050, "clipped.wav"),
                     "consent audio clipping", id="clipped", marks=pytest.mark.slow),
    ],
)
def test_a_bad_consent_reading_is_refused(fresh, enrollment_audio, check_tools, reading, match: str) -> None:
    script = new_script(fresh, seed=3)
    before = store_snapshot(fresh.home)
    with pytest.raises(ConsentError, match=f"Enrollment refused: {match}"):
        enroll(fresh, "joe", enrollment_audio.recordings(), reading(enrollment_audio, script.text), actor="ops",
               now=utcnow(), tools=check_tools)
    assert store_snapshot(fresh.home) == before


@pytest.mark.slow
def test_a_strangers_recording_among_the_training_set_is_refused(fresh, enrollment_audio, check_tools) -> None:
    script = new_script(fresh, seed=3)
    with pytest.raises(ConsentError, match=r"least similar recording 0\.\d+ \(zz-other.wav\)"):
        enroll(fresh, "joe", enrollment_audio.recordings(with_stranger=True), enrollment_audio.reading(script.text),
               actor="ops", now=utcnow(), tools=check_tools)


@pytest.mark.slow
def test_a_challenge_and_a_consent_recording_cannot_be_used_twice(enrolled, enrollment_audio, check_tools) -> None:
    reading = enrollment_audio.reading(_first_script_text(enrolled))  # the reading the module's enrollment used
    with pytest.raises(NotFoundError, match="No pending consent script"):
        enroll(enrolled, "joe", enrollment_audio.recordings(), reading, actor="ops", now=utcnow(), tools=check_tools)
    with pytest.raises(ConsentError, match="already used on .* cannot be used twice"):
        enroll(enrolled, "joe", enrollment_audio.recordings(), reading, actor="ops", now=utcnow(), tools=check_tools,
               script_id=1)
    new_script(enrolled, seed=9)
    with pytest.raises(ConsentError, match="already used by enrollment 1"):
        enroll(enrolled, "joe", enrollment_audio.recordings(), reading, actor="ops", now=utcnow(), tools=check_tools)


def _first_script_text(ws) -> str:
    from pipeline.store.models import ConsentScriptRow

    with ws.sessions() as s:
        return s.get(ConsentScriptRow, 1).text


def test_every_challenge_phrase_is_new(fresh) -> None:
    # The same seed draws the same first phrase: the store refuses to hand it out twice.
    first, second = new_script(fresh, seed=5), new_script(fresh, seed=5)
    assert first.challenge != second.challenge


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"organisation": "Another Org"}, "must name this workspace's organisation"),
        ({"valid_until": date(2020, 1, 1)}, "is not in the future"),
        ({"owner_account": "sam"}, "must be a user with the owner role"),
        ({"delegates": ["rita"]}, "must be a user with the delegate role"),
        ({"policy": "per_statement", "delegates": [], "owner_account": None}, "needs someone to approve"),
        ({"language": "fr", "languages": ["fr"]}, "no consent script in 'fr'"),
        ({"purposes": ["Public Statement"]}, "use lower-case letters"),
    ],
)
def test_bad_script_requests_are_refused(fresh, changes, match: str) -> None:
    before = store_snapshot(fresh.home)
    with pytest.raises(InputError, match=match):
        new_script(fresh, **changes)
    assert store_snapshot(fresh.home) == before


@pytest.mark.slow
def test_a_voices_owner_never_changes(workspace) -> None:
    """Re-enrolling voice "demo" for someone else would put their consent on Joe's voice model."""
    with pytest.raises(InputError, match="belongs to Joe Example; a voice's owner never changes"):
        create_script(workspace, "demo", owner="Eve Other", organisation=ORG, purposes=["public-statement"],
                      channels=["social"], languages=["en"], valid_until=date(2030, 1, 1), actor="ops", now=utcnow())


def test_a_language_without_a_recogniser_needs_the_operators_confirmation(fresh, enrollment_audio, check_tools) -> None:
    new_script(fresh, voice="joe-ur", languages=["ur"], language="ur")
    reading = enrollment_audio.reading(" ".join(ENROLL_SENTENCES[::-1]))  # no recogniser checks the words here
    with pytest.raises(ConsentError, match="No speech recogniser covers 'ur'.*--confirmed-by-operator"):
        enroll(fresh, "joe-ur", enrollment_audio.recordings(), reading, actor="ops", now=utcnow(), tools=check_tools)
    result = enroll(fresh, "joe-ur", enrollment_audio.recordings(), reading, actor="ops", now=utcnow(),
                    tools=check_tools, confirmed_by_operator=True)
    d = consent_details(fresh, "joe-ur", now=utcnow())
    assert d["enrollment"]["speech_recognition"] == "confirmed by operator ops" and d["enrollment"]["transcript"] is None
    assert result.voice_state == "enrolled" and any(c.name == "speaker similarity" and c.passed for c in result.checks)


@pytest.mark.slow
def test_operator_confirmation_cannot_replace_recognition_in_english(fresh, enrollment_audio, check_tools) -> None:
    script = new_script(fresh)
    with pytest.raises(InputError, match="checked by speech recognition"):
        enroll(fresh, "joe", enrollment_audio.recordings(), enrollment_audio.reading(script.text), actor="ops",
               now=utcnow(), tools=check_tools, confirmed_by_operator=True)


def test_only_an_admin_enrolls(fresh, enrollment_audio) -> None:
    new_script(fresh)
    with pytest.raises(PermissionError_, match="this needs the role admin"):
        enroll(fresh, "joe", enrollment_audio.recordings(), enrollment_audio.reading("Hello."), actor="rita",
               now=utcnow())


# --- recordings folders -------------------------------------------------------------------


def test_ljspeech_metadata_and_txt_beside_wav_both_work(tmp_path, enrollment_audio) -> None:
    src = enrollment_audio.recordings()
    lj = tmp_path / "lj"
    (lj / "wavs").mkdir(parents=True)
    for wav in sorted(src.glob("*.wav")):
        shutil.copy(wav, lj / "wavs" / wav.name)
    (lj / "metadata.csv").write_text("".join(f"joe-{i:02d}|{s.upper()}|{s}\n" for i, s in enumerate(ENROLL_SENTENCES)))
    from_lj = read_recordings(lj)
    assert [r.transcript for r in from_lj] == list(ENROLL_SENTENCES)  # the normalised column when present
    assert [r.transcript for r in read_recordings(src)] == list(ENROLL_SENTENCES)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: (d / "a.wav").write_bytes(b""), "a.wav has no transcript"),
        (lambda d: ((d / "a.wav").write_bytes(b""), (d / "a.txt").write_text(" ")), "a.wav has an empty transcript"),
        (lambda d: (d / "metadata.csv").write_text("gone|Hello.\n"), "names 'gone', but neither"),
        (lambda d: (d / "metadata.csv").write_text("../../etc/passwd|Hello.\n"), "plain file id"),
        (lambda d: ((d / "metadata.csv").write_text(""), (d / "extra.wav").write_bytes(b"")), "not in metadata.csv"),
        (lambda d: None, "holds no recordings"),
    ],
    ids=["no-txt", "empty-txt", "missing-wav", "path-in-id", "unlisted-wav", "empty"],
)
def test_bad_recordings_folders_are_refused(tmp_path, make, match: str) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    make(folder)
    with pytest.raises(InputError, match=match):
        read_recordings(folder)


# --- show, certificate ----------------------------------------------------------------------


@pytest.mark.slow
def test_consent_show_and_certificate(enrolled, tmp_path) -> None:
    home = ["--home", str(enrolled.home)]
    result = runner.invoke(app, ["consent", "show", "joe", *home])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "Consent for voice joe: active" in out and "speaker similarity" in out and "witness" in out
    result = runner.invoke(app, ["consent", "certificate", "joe", "--out", str(tmp_path / "c.html"), *home])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "c.html").read_text()
    d = consent_details(enrolled, "joe", now=utcnow())
    for part in ("Joe Example", ORG, "public-statement", "2030-12-31", "word error rate",
                 "speaker similarity", "challenge phrase heard", d["enrollment"]["consent_audio"]["sha256"],
                 d["consent"]["record_sha256"], "✓ pass", "witness", "owner"):
        assert part in html, part
    assert "<script" not in html


@pytest.mark.slow
def test_the_certificate_escapes_what_it_prints(enrolled) -> None:
    d = consent_details(enrolled, "joe", now=utcnow())
    d["consent"]["owner"] = "<script>alert(1)</script>"
    html = render_certificate(d)
    assert "<script>" not in html and "&lt;script&gt;" in html


# --- renewal -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_delegate_narrows_the_owner_widens_and_history_is_kept(enrolled) -> None:
    row, widened, narrowed = renew_consent(enrolled, "joe", purposes=["press-release"], actor="joe-delegate",
                                           now=utcnow())
    assert not widened and narrowed == ("purposes - public-statement",) and row.kind == "renewal"
    with pytest.raises(PermissionError_, match=r"needs the owner's own signature: run it as the owner's account "
                                               r"\(`--as joe`\)"):
        renew_consent(enrolled, "joe", valid_until=date(2032, 12, 31), actor="joe-delegate", now=utcnow())
    with pytest.raises(PermissionError_, match="needs the owner's own signature"):
        renew_consent(enrolled, "joe", channels=["social", "press"], actor="ops", now=utcnow())  # nor an admin
    row, widened, _ = renew_consent(enrolled, "joe", valid_until=date(2032, 12, 31), actor="joe", now=utcnow())
    assert widened == ("valid until 2032-12-31 (was 2030-12-31)",)
    d = consent_details(enrolled, "joe", now=utcnow())
    assert [h["kind"] for h in d["history"]] == ["enrollment", "renewal", "renewal"]
    assert d["consent"]["purposes"] == ["press-release"] and d["consent"]["verified"]
    assert [(s["signer"], s["capacity"], s["valid"]) for s in d["signatures"]] == [("joe", "owner", True)]
    assert d["consent"]["statement"].endswith("This renews my earlier consent for this voice on these terms.")
    assert len(enrolled_recordings(enrolled, "joe")) == len(ENROLL_SENTENCES)  # still the same enrollment


@pytest.mark.slow
def test_the_cli_renews_and_refuses_a_renewal_that_changes_nothing(enrolled) -> None:
    home = ["--home", str(enrolled.home)]
    result = runner.invoke(app, ["consent", "renew", "joe", "--channels", "social", *home, "--as", "joe-delegate"])
    assert result.exit_code == 0 and "narrowed channels - messaging" in " ".join(result.stdout.split())
    result = runner.invoke(app, ["consent", "renew", "joe", *home, "--as", "joe-delegate"])
    assert result.exit_code == 1 and "changes nothing" in result.stderr


# --- revocation and a new enrollment ------------------------------------------------------------


@pytest.mark.slow
def test_after_revocation_only_a_new_enrollment_brings_the_voice_back(enrolled, enrollment_audio, check_tools) -> None:
    revoke_consent(enrolled, "joe", "the owner withdrew", actor="joe", now=utcnow())  # the owner's own account
    assert show_voice(enrolled, "joe")[0].state == "revoked"
    with pytest.raises(ConsentError, match="was revoked"):
        enrolled_recordings(enrolled, "joe")
    with pytest.raises(ConsentError, match="cannot be renewed"):
        renew_consent(enrolled, "joe", valid_until=date(2031, 1, 1), actor="joe", now=utcnow())
    with pytest.raises(ConsentError, match="was revoked"):
        statements.submit(enrolled, voice_id="joe", purpose="public-statement", channel="social", language="en",
                          text="Hello.", actor="sam", now=utcnow())

    script = new_script(enrolled, seed=4)
    result = enroll(enrolled, "joe", enrollment_audio.recordings(), enrollment_audio.reading(script.text),
                    actor="ops", now=utcnow(), tools=check_tools)
    assert not result.created_voice and result.voice_state == "enrolled"
    again = {c.name: c for c in result.checks}["speaker similarity to the earlier enrollment"]
    assert again.passed and again.figure >= 0.8  # the same person as the first time
    d = consent_details(enrolled, "joe", now=utcnow())
    assert [(h["kind"], h["revoked_at"] is not None) for h in d["history"]] == [("enrollment", True),
                                                                                 ("enrollment", False)]
    assert d["consent"]["status"] == "active" and len(enrolled_recordings(enrolled, "joe")) == len(ENROLL_SENTENCES)
    statements.submit(enrolled, voice_id="joe", purpose="public-statement", channel="social", language="en",
                      text="Hello.", actor="sam", now=utcnow())


# --- the record proves itself -------------------------------------------------------------------


@pytest.mark.slow
def test_a_tampered_consent_record_counts_as_none(enrolled) -> None:
    con = sqlite3.connect(enrolled.home / "voxgate.db")
    con.execute("""UPDATE consents SET purposes = '["advertising","public-statement"]'""")
    con.commit()
    con.close()
    with pytest.raises(ConsentError, match="does not verify: its stored terms differ from the signed record"):
        statements.submit(enrolled, voice_id="joe", purpose="advertising", channel="social", language="en",
                          text="Buy now.", actor="sam", now=utcnow())
    d = consent_details(enrolled, "joe", now=utcnow())
    assert not d["consent"]["verified"]


def test_a_profile_consent_is_signed_by_the_admin_who_added_it(workspace) -> None:
    d = consent_details(workspace, "demo", now=utcnow())
    assert d["consent"]["kind"] == "profile" and d["consent"]["verified"]
    assert [(s["signer"], s["capacity"], s["valid"]) for s in d["signatures"]] == [("ops", "witness", True)]
    assert d["consent"]["evidence"]["model_sha256"] == show_voice(workspace, "demo")[0].model_sha256


def test_a_workspace_from_before_enrollment_upgrades_and_keeps_its_consents(tmp_path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from pipeline.services.voices import current_consent
    from pipeline.store.db import MIGRATIONS, migrate, open_engine, sqlite_url

    engine = open_engine(sqlite_url(tmp_path / "old.db"))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.execute(text("INSERT INTO voices VALUES ('v', 'V', '[\"en\"]', 'piper', 'm', NULL, 's', 'ready', 'p', "
                          "'2026-01-01T00:00:00.000000+00:00')"))
        conn.execute(text("INSERT INTO consents (voice_id, owner, organisation, statement, purposes, channels, languages,"
                          " valid_from, valid_until, policy, approvers, record_sha256, created_at) VALUES ('v', 'O', "
                          "'Org', 'I consent.', '[\"p\"]', '[\"c\"]', '[\"en\"]', '2026-01-01T00:00:00.000000+00:00', "
                          "'2030-01-01T00:00:00.000000+00:00', 'blanket', '[]', 'h', "
                          "'2026-01-01T00:00:00.000000+00:00')"))
    migrate(engine)
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        row = current_consent(s, "v", verified=False)  # the upgrade keeps the row as it was
        assert row is not None and row.kind is None and row.purposes == ["p"]
        # ...but a row without its signed record proves nothing (issue 10): every gate refuses it.
        with pytest.raises(ConsentError, match="no signed record"):
            current_consent(s, "v")
