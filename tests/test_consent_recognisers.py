"""The consent reading checked by the recogniser voxgate.toml configures for its language (issue 13, part 4).

The recogniser is a real faster-whisper folder: the bundled tiny.en model folder, pinned and declared
in `[recognisers.tiny]` as test_recognisers.py does. Declared for Urdu and handed Piper's English
where the Urdu script should be read, it refuses the reading by character error rate;
declared for English with CER it passes a faithful reading by its own measure. Either way
`--confirmed-by-operator` is refused: it is only for a language no recogniser covers.
"""

from __future__ import annotations

import pytest

from conftest import ENROLL_SENTENCES, store_snapshot
from pipeline.consent.checks import measured_checks, phrase_error_rate
from pipeline.errors import ConsentError, InputError, ProvenanceError
from pipeline.hashing import sha256_file
from pipeline.quality.asr import default_model_dir
from pipeline.quality.recognisers import RecogniserSpec
from pipeline.services.consent_certificate import consent_details
from pipeline.services.enrollment import enroll
from pipeline.services.workspace import open_workspace, utcnow
from pipeline.settings import CONFIG_FILE
from test_enrollment import make_workspace, new_script


def configure_recogniser(ws, languages: list[str], *, measure: str = "cer", threshold: float = 0.35,
                         sha256: str | None = None):
    """Add `[recognisers.tiny]` (the bundled model folder, pinned) to the workspace's voxgate.toml; reopen it."""
    model = default_model_dir()
    pin = sha256 or sha256_file(model / "model.bin")
    with (ws.home / CONFIG_FILE).open("a", encoding="utf-8") as f:
        f.write(f'\n[recognisers.tiny]\npath = "{model}"\nsha256 = "{pin}"\nlanguages = {languages!r}\n'
                f'measure = "{measure}"\nthreshold = {threshold}\ncalibrated = false\n'.replace("'", '"'))
    ws.engine.dispose()
    return open_workspace(ws.home)


@pytest.mark.parametrize(
    ("measure", "phrase", "heard", "rate"),
    [
        ("wer", ["red", "lamp"], ["the", "red", "lamp", "glows"], 0.0),  # anywhere in the transcript
        ("wer", ["red", "lamp"], ["the", "red", "camp"], 0.5),  # one word of two wrong
        ("cer", ["ab"], ["x", "ab", "y"], 0.0),
        ("cer", ["abcd"], ["abxd"], 0.25),  # one letter of four
        ("cer", ["abcd"], [], 1.0),  # nothing heard: every letter missing
    ],
)
def test_the_challenge_phrase_may_start_anywhere_in_the_transcript(measure, phrase, heard, rate) -> None:
    assert phrase_error_rate(measure, phrase, heard) == pytest.approx(rate)


def test_an_urdu_reading_is_compared_after_the_same_normalisation_on_both_sides() -> None:
    spec = RecogniserSpec("urdu", frozenset({"ur"}), "cer", 0.35, calibrated=False)
    script = "میں ۱۲ مارچ کو رضامندی دیتا ہوں۔ چاند دریا کتاب"
    heard = "میں بارہ مارچ کو رضامندی دیتا ہوں چاند دریا کتاب"  # digits spoken as words, no full stop
    phrase, whole = measured_checks(script, heard, ["چاند", "دریا", "کتاب"], spec, "ur")
    assert phrase.passed and phrase.figure == 0.0 and whole.name == "character error rate" and whole.figure == 0.0
    assert "not calibrated" in whole.detail
    wrong = measured_checks(script, "میں بارہ مارچ کو رضامندی دیتا ہوں", ["چاند", "دریا", "کتاب"], spec, "ur")
    # Leaving out the challenge words stays within the whole script's CER (the challenge is short):
    # the challenge check is what refuses a reading of an older script.
    assert not wrong[0].passed and wrong[1].passed


@pytest.mark.slow
def test_a_configured_urdu_recogniser_checks_the_reading_and_operator_confirmation_is_refused(
        tmp_path, enrollment_audio, check_tools) -> None:
    ws = configure_recogniser(make_workspace(tmp_path / "ws"), ["ur"])
    new_script(ws, voice="joe-ur", languages=["ur"], language="ur")
    reading = enrollment_audio.reading(" ".join(ENROLL_SENTENCES))  # English, not the Urdu script
    before = store_snapshot(ws.home)
    with pytest.raises(InputError, match=r"--confirmed-by-operator is only for languages no recogniser covers; "
                                         r"'ur' consent audio is checked by speech recognition \(tiny\)"):
        enroll(ws, "joe-ur", enrollment_audio.recordings(), reading, actor="ops", now=utcnow(), tools=check_tools,
               confirmed_by_operator=True)
    with pytest.raises(ConsentError, match=r"Enrollment refused: challenge phrase heard best match CER (0\.[4-9]\d|1\.00) by tiny"
                                           r".*the owner must read the whole script"):
        enroll(ws, "joe-ur", enrollment_audio.recordings(), reading, actor="ops", now=utcnow(), tools=check_tools)
    assert store_snapshot(ws.home) == before


def test_a_configured_recogniser_whose_model_is_not_the_pinned_one_refuses_before_any_check(
        tmp_path, enrollment_audio) -> None:
    ws = configure_recogniser(make_workspace(tmp_path / "ws"), ["ur"], sha256="0" * 64)
    new_script(ws, voice="joe-ur", languages=["ur"], language="ur")
    before = store_snapshot(ws.home)
    with pytest.raises(ProvenanceError, match="not the pinned"):
        enroll(ws, "joe-ur", enrollment_audio.recordings(), tmp_path / "not-read-yet.wav", actor="ops",
               now=utcnow())
    assert store_snapshot(ws.home) == before


@pytest.mark.slow
def test_a_configured_recogniser_passes_a_faithful_reading_by_its_own_measure(
        tmp_path, enrollment_audio, check_tools) -> None:
    ws = configure_recogniser(make_workspace(tmp_path / "ws"), ["en"], threshold=0.2)
    script = new_script(ws)
    result = enroll(ws, "joe", enrollment_audio.recordings(), enrollment_audio.reading(script.text), actor="ops",
                    now=utcnow(), tools=check_tools)
    by_name = {c.name: c for c in result.checks}
    assert by_name["character error rate"].passed and by_name["character error rate"].figure <= 0.2
    assert by_name["challenge phrase heard"].passed and "by tiny" in by_name["challenge phrase heard"].detail
    assert "word error rate" not in by_name  # the bundled recogniser's English gate did not run instead
    d = consent_details(ws, "joe", now=utcnow())
    assert d["enrollment"]["speech_recognition"] == "tiny (cer)" and d["enrollment"]["transcript"]
