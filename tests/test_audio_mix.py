"""Joining sentence chunks, concatenating parts, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audio.mix import (
    DEFAULT_PARAGRAPH_PAUSE_S,
    DEFAULT_PAUSE_S,
    TRIM_KEEP_S,
    concat,
    duration_s,
    join_with_pauses,
    resample,
    trim_silence,
)
from pipeline.errors import AudioError

RATE = 22_050


def _tone(seconds: float, level: float = 0.5, freq: float = 220.0) -> np.ndarray:
    return (level * np.sin(2 * np.pi * freq * np.arange(round(seconds * RATE)) / RATE)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.float32)


def _chunk(speech_s: float, lead_s: float = 0.2, tail_s: float = 0.3) -> np.ndarray:
    """Like an engine's output: speech with some silence of its own on both sides."""
    return np.concatenate([_silence(lead_s), _tone(speech_s), _silence(tail_s)])


def _pauses(audio: np.ndarray) -> list[float]:
    """Lengths in seconds of the runs of exact zeros between sounds (not at the ends)."""
    silent = np.concatenate(([0], (audio == 0).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(silent))
    return [
        (end - start) / RATE
        for start, end in zip(edges[::2], edges[1::2])
        if end - start > RATE // 100 and start > 0 and end < audio.size
    ]


@pytest.fixture(scope="module")
def margin() -> float:
    """Silence kept on each side of a trimmed chunk, in seconds."""
    return (duration_s(join_with_pauses([_chunk(0.5)], RATE), RATE) - 0.5) / 2


def test_trimming_keeps_a_few_milliseconds(margin: float) -> None:
    # enough for a quiet onset or release, too little to hear as a pause
    assert TRIM_KEEP_S <= margin <= 0.03


def test_duration_s() -> None:
    assert duration_s(_silence(1.5), RATE) == pytest.approx(1.5)


def test_join_trims_engine_silence_and_inserts_the_pause(margin: float) -> None:
    # the engine's own lead-in and tail differ per chunk; the pause between sentences must not
    joined = join_with_pauses([_chunk(0.5), _chunk(0.8, lead_s=0.05, tail_s=0.6)], RATE)
    assert duration_s(joined, RATE) == pytest.approx(0.5 + 0.8 + DEFAULT_PAUSE_S + 4 * margin, abs=0.002)
    assert _pauses(joined) == [pytest.approx(DEFAULT_PAUSE_S + 2 * margin, abs=0.002)]
    assert joined.dtype == np.float32


def test_join_uses_the_paragraph_pause_after_a_paragraph_end(margin: float) -> None:
    joined = join_with_pauses([_chunk(0.3), _chunk(0.3), _chunk(0.3)], RATE, paragraph_ends={0})
    assert _pauses(joined) == [
        pytest.approx(DEFAULT_PARAGRAPH_PAUSE_S + 2 * margin, abs=0.002),
        pytest.approx(DEFAULT_PAUSE_S + 2 * margin, abs=0.002),
    ]


def test_join_fades_every_cut_edge() -> None:
    # chunks cut at the crest of a wave would click if joined as they are
    crest = np.full(RATE // 2, 0.8, np.float32)
    joined = join_with_pauses([crest, crest], RATE, pause_s=0.1)
    assert abs(joined[0]) < 0.01 and abs(joined[-1]) < 0.01
    assert np.abs(np.diff(joined)).max() < 0.02  # no step anywhere, including into and out of the pause


@pytest.mark.parametrize(
    ("tail_db", "kept"),
    [
        (-30.0, True),  # a soft final "s" is part of the word
        (-50.0, False),  # hiss far below the speech is trimmed
    ],
)
def test_join_keeps_quiet_word_endings_and_trims_hiss(tail_db: float, kept: bool) -> None:
    tail = _tone(0.2, level=0.5 * 10 ** (tail_db / 20), freq=3000.0)
    joined = join_with_pauses([np.concatenate([_tone(0.5), tail, _silence(0.3)])], RATE)
    assert (duration_s(joined, RATE) > 0.7) is kept


def test_paragraph_pause_survives_a_silent_last_sentence(margin: float) -> None:
    # the sentence ending the first paragraph gave no audio ("..."): the break is still a paragraph break
    joined = join_with_pauses([_chunk(0.3), np.zeros(0, np.float32), _chunk(0.3)], RATE, paragraph_ends={1})
    assert _pauses(joined) == [pytest.approx(DEFAULT_PARAGRAPH_PAUSE_S + 2 * margin, abs=0.002)]


def test_join_skips_silent_chunks_without_doubling_the_pause(margin: float) -> None:
    joined = join_with_pauses([_chunk(0.3), _silence(0.5), np.zeros(0, np.float32), _chunk(0.3)], RATE)
    assert _pauses(joined) == [pytest.approx(DEFAULT_PAUSE_S + 2 * margin, abs=0.002)]


def test_join_real_speech(speech_clip: tuple[np.ndarray, int]) -> None:
    samples, rate = speech_clip
    joined = join_with_pauses([samples, samples], rate)
    assert len(joined) < 2 * len(samples) + DEFAULT_PAUSE_S * rate  # the voice's own silences were trimmed
    assert len(joined) > 1.5 * len(samples)  # but none of the speech
    assert abs(joined[0]) < 1e-3 and abs(joined[-1]) < 1e-3


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([], "all 0 chunk"),
        ([_silence(1.0), _silence(0.5) + 1e-6], "empty or silent"),  # -120 dBFS is no speech
        ([_tone(0.5).reshape(-1, 1).repeat(2, axis=1)], "mono"),
        ([np.array([0.1, np.inf], np.float32)], "NaN or infinite"),
        ([np.zeros(10, np.int16)], "float samples"),
    ],
)
def test_join_refuses_what_it_cannot_join(chunks: list[np.ndarray], message: str) -> None:
    with pytest.raises(AudioError, match=message):
        join_with_pauses(chunks, RATE)


def test_join_refuses_negative_pauses() -> None:
    with pytest.raises(AudioError, match="negative"):
        join_with_pauses([_tone(0.2)], RATE, pause_s=-0.1)


def test_trim_silence_of_pure_silence_is_empty() -> None:
    assert trim_silence(_silence(0.5), RATE).size == 0


def test_concat_puts_parts_in_order_with_the_gap() -> None:
    disclosure, message = _tone(0.4, level=0.1), _tone(0.9, level=0.3)
    joined = concat([disclosure, message], RATE, gap_s=0.5)
    assert duration_s(joined, RATE) == pytest.approx(0.4 + 0.5 + 0.9, abs=1 / RATE)
    np.testing.assert_array_equal(joined[: disclosure.size], disclosure)
    np.testing.assert_array_equal(joined[-message.size :], message)
    assert not joined[disclosure.size : -message.size].any()


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([], "no parts"),
        ([_tone(0.2), np.zeros(0, np.float32)], "Part 2 of 2 is empty"),
    ],
)
def test_concat_refuses_missing_parts(parts: list[np.ndarray], message: str) -> None:
    with pytest.raises(AudioError, match=message):
        concat(parts, RATE, gap_s=0.5)


@pytest.mark.parametrize(("rate_from", "rate_to"), [(22_050, 48_000), (48_000, 22_050), (16_000, 44_100)])
def test_resample_keeps_duration_and_pitch(rate_from: int, rate_to: int) -> None:
    tone = np.sin(2 * np.pi * 1000 * np.arange(rate_from) / rate_from).astype(np.float32)
    result = resample(tone, rate_from, rate_to)
    assert result.dtype == np.float32
    assert len(result) == rate_to
    spectrum = np.abs(np.fft.rfft(result * np.hanning(len(result))))
    assert np.argmax(spectrum) * rate_to / len(result) == pytest.approx(1000, abs=2)


def test_resample_to_the_same_rate_returns_a_copy() -> None:
    tone = _tone(0.1)
    result = resample(tone, RATE, RATE)
    np.testing.assert_array_equal(result, tone)
    assert result is not tone


def test_resample_refuses_a_zero_rate() -> None:
    with pytest.raises(AudioError, match="Sample rate must be positive"):
        resample(_tone(0.1), 0, RATE)
