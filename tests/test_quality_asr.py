"""Speech recognition on real synthesised speech, and the word error rate it is judged by."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InputError, ProvenanceError
from pipeline.quality.asr import Transcriber, supports
from pipeline.quality.wer import normalise_words, word_error_rate

MAX_WER = 0.2


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber().load()


def test_transcribes_speech_clip_close_to_its_text(
    transcriber: Transcriber, speech_clip: tuple[np.ndarray, int], speech_clip_text: str
) -> None:
    transcript = transcriber.transcribe(*speech_clip)
    assert word_error_rate(speech_clip_text, transcript.text) < MAX_WER, transcript.text


def test_word_timings_are_ordered_and_inside_the_clip(
    transcriber: Transcriber, speech_clip: tuple[np.ndarray, int]
) -> None:
    samples, sr = speech_clip
    assert transcriber.transcribe(samples, sr).words == ()  # only when asked
    words = transcriber.transcribe(samples, sr, word_timings=True).words
    assert words
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start <= w.end <= len(samples) / sr + 0.05 for w in words)


def test_unsupported_language_is_refused(transcriber: Transcriber, speech_clip: tuple[np.ndarray, int]) -> None:
    with pytest.raises(InputError, match="covers .* only"):
        transcriber.transcribe(*speech_clip, language="ur")


def test_use_before_load_is_refused(speech_clip: tuple[np.ndarray, int]) -> None:
    with pytest.raises(ProvenanceError, match="load"):
        Transcriber().transcribe(*speech_clip)


def test_missing_model_directory_says_how_to_fix(tmp_path) -> None:
    with pytest.raises(ProvenanceError, match="make setup"):
        Transcriber(tmp_path).load()


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("en", True), ("en-GB", True), ("en_US", True), ("EN", True), ("ur", False), ("ur-PK", False)],
)
def test_supports_english_only(lang: str, expected: bool) -> None:
    assert supports(lang) is expected


def test_identical_text_has_zero_wer() -> None:
    assert word_error_rate("We thank everyone.", "We thank everyone.") == 0.0


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("the cat sat down", "the cat sat down", 0.0),
        ("the cat sat down", "the dog sat down", 1 / 4),  # one substitution
        ("the cat sat down", "the cat down", 1 / 4),  # one deletion
        ("the cat sat down", "the cat sat right down", 1 / 4),  # one insertion
        ("the cat sat down", "", 1.0),  # nothing heard: every word deleted
        ("hello", "hello hello hello", 2.0),  # insertions can push WER past 1
        ("The court, in PUBLIC!", "the court in public", 0.0),  # case and punctuation are writing, not speech
        ("We don't stop.", "we dont stop", 0.0),  # apostrophes dropped, not split
        ("a well-known case", "a well known case", 0.0),  # hyphen is a word break
        ("forty-two people", "42 people", 0.0),  # Whisper writes numbers as digits
        ("1,000 voices", "one thousand voices", 0.0),  # thousands separator
        ("the 3rd time", "the third time", 0.0),  # ordinals
    ],
)
def test_word_error_rate_known_cases(reference: str, hypothesis: str, expected: float) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


def test_empty_reference_is_an_input_error() -> None:
    with pytest.raises(InputError, match="reference"):
        word_error_rate("...", "anything")


def test_normalise_words_keeps_non_latin_script() -> None:
    """Urdu has no recogniser yet, but normalisation must not eat its letters (only ۔ and ، go)."""
    assert normalise_words("یہ پیغام، ہے۔") == ["یہ", "پیغام", "ہے"]
