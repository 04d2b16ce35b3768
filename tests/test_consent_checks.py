"""The enrollment checks on real audio, and the consent gate at render and at release for every refusal."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import DEMO_VOICE, ENROLL_SENTENCES, voice_profile
from pipeline.consent.checks import (
    CheckConfig,
    audio_checks,
    audio_figures,
    first_failure,
    speaker_checks,
    speech_checks,
    split_for_asr,
)
from pipeline.domain import Decision, Event
from pipeline.errors import ApprovalError, ConsentError, EngineError, InputError, TransitionError
from pipeline.services import clips, review, statements
from pipeline.services.consent_renewal import renew_consent
from pipeline.services.render import render_statement
from pipeline.services.tools import Tools
from pipeline.services.statements import get_statement, transition
from pipeline.services.voices import add_voice, revoke_consent
from pipeline.services.workspace import utcnow
from pipeline.store.models import ClipFileRow, ClipRow

CFG = CheckConfig()
SR = 22_050
SCRIPT = ("My name is Joe Example. I consent to Free Voice Media publishing statements approved by me, one by one. "
          "This consent lasts until December 31, 2030. My challenge words are: sailor, toaster, whistle, market.")
HEARD = ("My name is Joe Example. I consent to free voice media publishing statements approved by me one by one. "
         "This consent lasts until December 31st, 2030. My challenge words are sailor, toaster, whistle, market.")


def heard(transcript: str) -> list:
    h = speech_checks(SCRIPT, transcript, names=["Joe Example"], organisation="Free Voice Media",
                      until=datetime(2030, 12, 31).date(), challenge=["sailor", "toaster", "whistle", "market"], cfg=CFG)
    return [c for c in h.checks if not c.passed]


# --- what was said ------------------------------------------------------------------


def test_a_faithful_reading_passes_every_speech_check() -> None:
    assert heard(HEARD) == []


@pytest.mark.parametrize(
    ("transcript", "failed", "detail"),
    [
        (HEARD.replace("sailor, toaster, whistle, market", ""), "challenge phrase heard",
         "missing sailor, toaster, whistle, market"),
        (HEARD.replace("whistle, market", "market, whistle"), "challenge phrase heard", "words out of order"),
        (HEARD.replace("Joe Example", "Maria Lopez"), "name 'Joe Example' heard", "not heard"),
        (HEARD.replace("free voice media", "open courts network"), "organisation heard", "not heard"),
        (HEARD.replace("December 31st, 2030", "December 31st, 2031"), "end date heard", "2030-12-31 not heard"),
    ],
    ids=["no-challenge", "challenge-reordered", "wrong-name", "wrong-organisation", "wrong-year"],
)
def test_each_missing_element_fails_its_own_check(transcript: str, failed: str, detail: str) -> None:
    fails = heard(transcript)
    assert fails[0].name == failed and detail in fails[0].detail


def test_a_loose_reading_fails_on_word_error_rate() -> None:
    loose = HEARD.replace("publishing statements approved by me one by one", "may do what they like with my voice")
    fails = heard(loose)
    assert [c.name for c in fails] == ["word error rate"] and fails[0].figure > CFG.max_wer


def test_long_readings_are_cut_at_their_quietest_moments_for_the_recogniser() -> None:
    sr = 16_000
    speech = np.tile(np.r_[np.full(sr * 4, 0.3, np.float32), np.zeros(sr // 2, np.float32)], 12)  # 54 s
    pieces = split_for_asr(speech, sr)
    assert sum(p.size for p in pieces) == speech.size and all(p.size <= 20 * sr for p in pieces)
    assert all(np.abs(p[-200:]).max() == 0 for p in pieces[:-1])  # every cut falls in a pause


# --- how it was recorded ------------------------------------------------------------


def speech(seconds: float = 8.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    syllables = (np.sin(2 * np.pi * 3 * t) > -0.3).astype(np.float32)  # on/off like syllables and pauses
    return (0.2 * np.sin(2 * np.pi * 180 * t) * syllables).astype(np.float32)


@pytest.mark.parametrize(
    ("audio", "sr", "failed"),
    [
        (np.zeros(SR * 8, np.float32), SR, "silence"),
        (np.clip(speech() * 20, -1, 1), SR, "clipping"),
        (speech(8, 8000), 8000, "sample rate"),  # a phone line: too narrow for the recogniser and the encoder
        (speech(2.0), SR, "duration"),  # too short to hold the script
        (speech() * 0.01, SR, "loudness"),  # about -55 LUFS: clean, but any noise would drown it
    ],
    ids=["silent", "clipped", "8-khz", "too-short", "too-quiet"],
)
def test_consent_audio_checks_refuse_bad_recordings(audio: np.ndarray, sr: int, failed: str) -> None:
    checks = audio_checks("consent audio", audio_figures(audio, sr), consent=True, cfg=CFG)
    assert first_failure(checks).name == f"consent audio {failed}"


def test_good_audio_passes() -> None:
    assert first_failure(audio_checks("consent audio", audio_figures(speech(), SR), consent=True, cfg=CFG)) is None


def test_check_config_reads_overrides_and_refuses_unknown_keys() -> None:
    assert CheckConfig.from_dict({"max_wer": 0.1}).max_wer == 0.1
    with pytest.raises(InputError, match="unknown settings"):
        CheckConfig.from_dict({"max_wr": 0.1})


# --- who said it (real speech, real encoder) ------------------------------------------


@pytest.mark.slow
def test_same_speaker_passes_and_a_different_speaker_fails(enrollment_audio, check_tools) -> None:
    enc = check_tools.speaker()
    recordings = [(f"r{i}", enc.embed(*enrollment_audio.speak(s))) for i, s in enumerate(ENROLL_SENTENCES)]
    reading = " ".join(ENROLL_SENTENCES[::-1]) + " Thank you for listening."
    same = speaker_checks(enc.embed(*enrollment_audio.speak(reading)), recordings, CFG)
    other = speaker_checks(enc.embed(*enrollment_audio.speak(reading, "stranger")), recordings, CFG)
    assert all(c.passed for c in same), same
    assert not other[0].passed and other[0].figure < CFG.min_speaker_similarity - 0.15, other


# --- the consent gate at render and at release ----------------------------------------

TEXT = "We ask for a fair and public trial."


def two_language_voice(tmp_path: Path) -> Path:
    """The demo profile speaking English and Urdu, consented for both."""
    folder = tmp_path / "bilingual"
    folder.mkdir()
    text = (DEMO_VOICE / "voice.toml").read_text().replace('id = "demo"', 'id = "bilingual"')
    (folder / "voice.toml").write_text(text.replace('languages = ["en"]', 'languages = ["en", "ur"]'))
    return folder


def approved(ws, voice: str = "demo", owner_too: bool = True) -> int:
    sid = statements.submit(ws, voice_id=voice, purpose="public-statement", channel="social", language="en",
                            text=TEXT, actor="sam", now=utcnow()).id
    review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
    if owner_too:
        review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
    return sid


def stand_in_draft(ws, sid: int, tmp_path: Path) -> int:
    """Move a text-approved statement to draft_ready with a registered WAV master.

    Stands in for the render pipeline (test_render_flow runs the real one), so
    that every refusal at release can be checked in a second rather than a render.
    """
    wav = tmp_path / f"master-{sid}.wav"
    sf.write(wav, np.zeros(4800, np.float32), 48_000)
    digest = ws.files.put(wav)
    with ws.transaction() as s:
        row = get_statement(s, sid)
        transition(ws, s, row, Event.RENDER_CLAIMED, actor="rita", now=utcnow())
        clip = ClipRow(statement_id=sid, revision=row.revision, revision_sha256=row.revisions[-1].sha256,
                       voice_id=row.voice_id, model_sha256="0" * 64, audio_sha256=digest, settings={}, figures={},
                       labels={}, state="draft", created_at=utcnow())
        s.add(clip)
        s.flush()
        s.add(ClipFileRow(clip_id=clip.id, format="wav", sha256=digest, size=wav.stat().st_size))
        transition(ws, s, row, Event.RENDERED, actor="rita", now=utcnow(), data={"clip": clip.id})
        return clip.id


def narrow(ws, voice: str = "demo", **change) -> None:
    renew_consent(ws, voice, actor="joe-delegate", now=utcnow(), **change)


# Each case: how the voice is set up, and what happens between approval and the gate.
CASES = {
    "expired": (None, lambda ws, v: None, "expired on 2030-12-31"),
    "purpose": (None, lambda ws, v: narrow(ws, v, purposes=["press-release"]),
                "purpose 'public-statement' of statement 1 is outside the consent"),
    "channel": (None, lambda ws, v: narrow(ws, v, channels=["press"]), "channel 'social' of statement 1 is outside"),
    "language": ("bilingual", lambda ws, v: narrow(ws, v, languages=["ur"]), "language 'en' of statement 1 is outside"),
    "revoked": (None, lambda ws, v: revoke_consent(ws, v, "the owner withdrew", actor="joe-delegate", now=utcnow()),
                "was revoked"),
    "owner-approval": ("open", lambda ws, v: narrow(ws, v, policy="per_statement"),
                       "still needs the voice owner's (or a named delegate's) approval"),
}
LATER = datetime(2031, 1, 2, tzinfo=timezone.utc)


def setup_voice(ws, tmp_path: Path, kind: str | None) -> str:
    if kind == "bilingual":
        add_voice(ws, two_language_voice(tmp_path), actor="ops", now=utcnow())
        return "bilingual"
    if kind == "open":  # blanket: a reviewer's approval is enough until the owner asks to approve each statement
        add_voice(ws, voice_profile(tmp_path, id='"open"', policy='"blanket"'), actor="ops", now=utcnow())
        return "open"
    return "demo"


@pytest.mark.parametrize("case", CASES)
def test_the_render_gate_refuses(workspace, tmp_path, case: str) -> None:
    """A change between text approval and render (revocation, narrowed scope, expiry) blocks the render."""
    kind, change, message = CASES[case]
    voice = setup_voice(workspace, tmp_path, kind)
    sid = approved(workspace, voice, owner_too=kind != "open")
    change(workspace, voice)
    now = LATER if case == "expired" else utcnow()
    with pytest.raises((ConsentError, ApprovalError), match=re.escape(message)):
        render_statement(workspace, sid, Tools(), actor="rita", now=now)
    assert statements.show_statement(workspace, sid).state in ("text_approved", "revoked")
    with workspace.sessions() as s:
        assert s.query(ClipRow).count() == 0  # nothing was rendered, not even a failed claim


@pytest.mark.parametrize("case", CASES)
def test_the_release_gate_refuses(workspace, tmp_path, case: str) -> None:
    """The same change after the audio was rendered blocks the release, and the draft is never released."""
    kind, change, message = CASES[case]
    voice = setup_voice(workspace, tmp_path, kind)
    sid = approved(workspace, voice, owner_too=kind != "open")
    clip_id = stand_in_draft(workspace, sid, tmp_path)
    change(workspace, voice)
    now = LATER if case == "expired" else utcnow()
    if case == "revoked":  # the statement itself is revoked: no sign-off, no release
        with pytest.raises(TransitionError, match="Statement 1 is revoked"):
            review.decide(workspace, sid, Decision.APPROVE, actor="ravi", now=now)
        with pytest.raises(TransitionError, match="consent was revoked"):
            review.release(workspace, sid, actor="rita", now=now)
    else:
        with pytest.raises((ConsentError, ApprovalError), match="the release was refused: .*" + re.escape(message)):
            review.decide(workspace, sid, Decision.APPROVE, actor="ravi", now=now)
        assert statements.show_statement(workspace, sid).state == "audio_approved"
        with pytest.raises((ConsentError, ApprovalError), match=re.escape(message)):  # and again on a retry
            review.release(workspace, sid, actor="rita", now=now)
    assert clips.get_clip(workspace, clip_id).state == "draft"


def test_revocation_after_release_marks_the_clip_revoked_and_exports_refuse(workspace, tmp_path) -> None:
    sid = approved(workspace)
    clip_id = stand_in_draft(workspace, sid, tmp_path)
    assert review.decide(workspace, sid, Decision.APPROVE, actor="ravi", now=utcnow()).state == "released"
    counts = revoke_consent(workspace, "demo", "the owner withdrew", actor="joe-delegate", now=utcnow())
    assert counts == {"statements": 1, "clips": 1}
    assert clips.get_clip(workspace, clip_id).state == "revoked"
    assert statements.show_statement(workspace, sid).state == "revoked"
    with pytest.raises(ConsentError, match="was revoked with its voice's consent"):
        clips.export_clip(workspace, clip_id, "wav", tmp_path, actor="dana", now=utcnow())


def test_a_voice_that_is_only_enrolled_cannot_render(workspace) -> None:
    """An enrolled voice has consent but no model: the render stops with a clear message, nothing is claimed."""
    sid = approved(workspace)
    with workspace.transaction() as s:
        from pipeline.store.models import VoiceRow

        s.get(VoiceRow, "demo").state = "enrolled"
    with pytest.raises(EngineError, match="is enrolled, not ready: .* no usable model yet"):
        render_statement(workspace, sid, Tools(), actor="rita", now=utcnow())
    assert statements.show_statement(workspace, sid).state == "text_approved"


@pytest.mark.slow
def test_revocation_between_a_real_render_and_release_blocks_the_release(workspace) -> None:
    sid = approved(workspace)
    result = render_statement(workspace, sid, Tools(), actor="rita", now=utcnow())
    revoke_consent(workspace, "demo", "the owner withdrew", actor="joe-delegate", now=utcnow())
    with pytest.raises(TransitionError, match="consent was revoked"):
        review.release(workspace, sid, actor="rita", now=utcnow())
    assert clips.get_clip(workspace, result.clip_id).state == "draft"
    now = utcnow() + timedelta(seconds=1)
    with pytest.raises(TransitionError):
        review.decide(workspace, sid, Decision.APPROVE, actor="ravi", now=now)
