"""The keyed payload mark: a 32-bit serial read back blind, by the key holder only, after real attacks.

Runs a quick subset of scripts/bench_watermark.py's protocol on real speech
from two very different voices (the packaged Piper voice and espeak-ng's
formant synthesis); the bench runs the full one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio.mix import resample
from pipeline.errors import InputError, ProvenanceError
from pipeline.export.probe import decode
from pipeline.provenance import payload_code
from pipeline.provenance.payload import (
    BANDS,
    DEFAULT_MARGIN,
    FALSE_POSITIVE_BOUND,
    MATCH_FALSE_POSITIVES,
    MIN_DETECT_S,
    MIN_DURATION_S,
    MIN_SEARCH_S,
    PayloadMark,
    derive_key,
    match_threshold,
)

KEY = derive_key(b"test workspace secret, 32 bytes!")
SERIAL = 0xC0FFEE42
# The code decodes reliably from a confidence of about 15; anything read must also clear it.
READ_MIN_CONFIDENCE = 15.0
ESPEAK_TEXT = (
    "The hearing was moved to the small room at the back of the court. "
    "Nobody from the press was allowed inside, and the windows were covered. "
    "We will keep asking for an open trial until the judge agrees."
)


@pytest.fixture(scope="module")
def mark() -> PayloadMark:
    return PayloadMark(KEY)


@pytest.fixture(scope="module")
def piper_8s(speech_clip: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    """The ~6 s Piper clip twice with a pause: ≥ 8 s, the shortest the robustness figures are for."""
    samples, sr = speech_clip
    clip = np.concatenate([samples, np.zeros(int(0.3 * sr), np.float32), samples])
    return (0.89 * clip / np.abs(clip).max()).astype(np.float32), sr  # a finished render peaks near -1 dBFS


@pytest.fixture(scope="module")
def espeak_8s(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    """A clearly different voice: espeak-ng's female formant variant (no neural vocoder at all)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    wav = tmp_path_factory.mktemp("espeak") / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+f3", "-w", str(wav), ESPEAK_TEXT], check=True, capture_output=True)
    samples, sr = decode(wav)
    assert len(samples) >= 8 * sr
    return (0.89 * samples / np.abs(samples).max()).astype(np.float32), sr


@pytest.fixture(scope="module")
def marked(mark: PayloadMark, piper_8s: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    samples, sr = piper_8s
    out, _found = mark.embed_and_verify(samples, sr, SERIAL)
    return out, sr


def _through_ffmpeg(x: np.ndarray, sr: int, tmp_path: Path, suffix: str, *codec: str) -> np.ndarray:
    import soundfile

    source, target = tmp_path / "in.wav", tmp_path / f"out{suffix}"
    soundfile.write(str(source), x, sr, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(source), "-ac", "1", *codec, str(target)],
                   check=True, capture_output=True)
    return decode(target, sr)[0]


def _noise_at(x: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.random.default_rng(5).standard_normal(len(x)) * np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def test_marked_clip_reads_its_serial(mark: PayloadMark, marked: tuple[np.ndarray, int]) -> None:
    found = mark.detect(*marked)
    assert found.payload == SERIAL
    assert found.confidence >= DEFAULT_MARGIN
    assert found.offset_s == pytest.approx(0.0, abs=0.005)  # nothing was cut: the first period starts at 0


def test_second_voice_reads_its_serial(mark: PayloadMark, espeak_8s: tuple[np.ndarray, int]) -> None:
    """A design tuned on one voice alone fails on others: the formant voice must read as well."""
    out, found = mark.embed_and_verify(*espeak_8s, 7)
    assert found.payload == 7
    assert mark.detect(_noise_at(out, 20.0), espeak_8s[1]).payload == 7


# Each attack is one the issue lists; the full set, on 50 clips per voice, is in the bench.
ATTACKS = {
    "mp3_64k": lambda x, sr, tmp: _through_ffmpeg(x, sr, tmp, ".mp3", "-c:a", "libmp3lame", "-b:a", "64k"),
    "opus_24k": lambda x, sr, tmp: _through_ffmpeg(x, sr, tmp, ".ogg", "-c:a", "libopus", "-b:a", "24k"),
    "cut_1s_from_start": lambda x, sr, tmp: x[sr:],  # shifts the tile grid by 31.25 tiles: needs the sync search
    "gain_plus_6db_clipped": lambda x, sr, tmp: np.clip(2.0 * x, -1.0, 1.0),  # peaks at -1 dBFS: clips hard
    "white_noise_20db": lambda x, sr, tmp: _noise_at(x, 20.0),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_serial_survives_attack(
    mark: PayloadMark, marked: tuple[np.ndarray, int], attack: str, tmp_path: Path
) -> None:
    samples, sr = marked
    found = mark.detect(ATTACKS[attack](samples, sr, tmp_path), sr)
    assert found.payload == SERIAL
    assert found.confidence >= READ_MIN_CONFIDENCE


@pytest.mark.slow
def test_second_voice_survives_opus_then_mp3(
    mark: PayloadMark, espeak_8s: tuple[np.ndarray, int], tmp_path: Path
) -> None:
    """The forwarded voice note: Opus 32k, then MP3 64k, on the voice Opus treats worst."""
    samples, sr = espeak_8s
    out = mark.embed(samples, sr, 99)
    opus = _through_ffmpeg(out, sr, tmp_path, ".ogg", "-c:a", "libopus", "-b:a", "32k")
    forwarded = _through_ffmpeg(opus, sr, tmp_path, ".mp3", "-c:a", "libmp3lame", "-b:a", "64k")
    assert mark.detect(forwarded, sr).payload == 99


def test_wrong_key_reads_nothing(marked: tuple[np.ndarray, int]) -> None:
    other = PayloadMark(derive_key(b"another workspace secret, 32 byt"))
    assert other.detect(*marked).payload is None


def test_unmarked_speech_reads_nothing(mark: PayloadMark, piper_8s: tuple[np.ndarray, int]) -> None:
    found = mark.detect(*piper_8s)
    assert found.payload is None
    assert found.offset_s is None


@pytest.mark.parametrize("level", [0.0, 1e-5])  # digital silence, and a -100 dBFS hiss
def test_silence_reads_nothing(mark: PayloadMark, level: float) -> None:
    silence = (level * np.random.default_rng(1).standard_normal(10 * 16_000)).astype(np.float32)
    assert mark.detect(silence, 16_000).payload is None


def test_silence_cannot_be_marked(mark: PayloadMark) -> None:
    """Fail closed: a multiplicative mark adds nothing to silence, so the render must refuse it."""
    with pytest.raises(ProvenanceError, match="refusing"):
        mark.embed_and_verify(np.zeros(10 * 22_050, np.float32), 22_050, 1)


def test_too_short_clip_is_refused(mark: PayloadMark, speech_clip: tuple[np.ndarray, int]) -> None:
    """Marking needs two periods; reading needs one and a bit (shorter excerpts are read, see below)."""
    samples, sr = speech_clip
    with pytest.raises(ProvenanceError, match="at least 4 s to be marked"):
        mark.embed(samples[: int((MIN_DURATION_S - 0.1) * sr)], sr, 1)
    too_short = samples[: int((MIN_DETECT_S - 0.1) * sr)]
    with pytest.raises(ProvenanceError, match="at least 2.5 s to be read"):
        mark.detect(too_short, sr)
    with pytest.raises(ProvenanceError, match="at least 2.5 s to be read"):
        mark.match(too_short, sr, [1])


def test_shortest_supported_clip_marks_with_margin(mark: PayloadMark, speech_clip: tuple[np.ndarray, int]) -> None:
    """MIN_DURATION_S is two periods of the mark; a clip that long must still verify with margin."""
    samples, sr = speech_clip
    _out, found = mark.embed_and_verify(samples[: int(MIN_DURATION_S * sr)], sr, 11)
    assert found.payload == 11


def test_mark_is_quiet_and_keeps_shape(marked: tuple[np.ndarray, int], piper_8s: tuple[np.ndarray, int]) -> None:
    samples, _sr = piper_8s
    out, _sr = marked
    assert out.shape == samples.shape
    assert out.dtype == np.float32
    snr = 10 * np.log10(np.sum(samples.astype(np.float64) ** 2) / np.sum((out - samples).astype(np.float64) ** 2))
    assert snr >= 25.0


def test_full_scale_input_gets_no_new_clipping(mark: PayloadMark, piper_8s: tuple[np.ndarray, int]) -> None:
    samples, sr = piper_8s
    loud = (samples / np.abs(samples).max()).astype(np.float32)  # peaks exactly at full scale
    assert np.abs(mark.embed(loud, sr, 3)).max() <= 1.0


def test_48k_master_keeps_content_above_8khz(mark: PayloadMark, piper_8s: tuple[np.ndarray, int]) -> None:
    """Only the mark's difference signal is resampled: the band above 8 kHz of a master is untouched.

    What does land there is the resampling filter's stopband leakage of the
    mark, about 80 dB below the signal.
    """
    samples, sr = piper_8s
    x48 = 0.8 * resample(samples, sr, 48_000)
    out = mark.embed(x48, 48_000, 5)
    changed = np.abs(np.fft.rfft(out.astype(np.float64) - x48)) ** 2
    signal = np.abs(np.fft.rfft(x48.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x48), 1 / 48_000)
    assert changed[freqs > 8_500].sum() < 1e-7 * signal.sum()
    assert mark.detect(out, 48_000).payload == 5


@pytest.mark.parametrize("payload", [-1, 2**32])
def test_payload_must_fit_32_bits(mark: PayloadMark, piper_8s: tuple[np.ndarray, int], payload: int) -> None:
    with pytest.raises(InputError, match="32-bit"):
        mark.embed(*piper_8s, payload)


def test_short_key_is_refused() -> None:
    with pytest.raises(InputError, match="at least 16"):
        PayloadMark(b"too short")


def test_derived_keys_differ_by_purpose() -> None:
    secret = b"workspace secret of 32 bytes ..."
    assert derive_key(secret) == derive_key(secret)
    assert derive_key(secret) != derive_key(secret, "payload-v2")
    assert len(derive_key(secret)) == 32


def test_pattern_differs_per_serial() -> None:
    """Collusion: consecutive serials must not share a pattern, or averaging clips would reveal it."""
    keys = payload_code.CodeKeys.derive(KEY, BANDS)
    first, second = (payload_code.chips(payload_code.seal(s, keys), keys) for s in (1000, 1001))
    assert abs(np.mean(first * second)) < 0.1


def test_any_flipped_bit_fails_the_tag() -> None:
    """A misread bit must never pass as another serial (the integrity check, at every rotation)."""
    keys = payload_code.CodeKeys.derive(KEY, BANDS)
    message = payload_code.seal(SERIAL, keys)
    assert payload_code.open_rotation(np.roll(message, 9), keys) == (SERIAL, 9)
    for bit in range(len(message)):
        flipped = message.copy()
        flipped[bit] ^= 1
        assert payload_code.open_rotation(flipped, keys) is None




# --- time-scale changes (issue 11): the detector searches tempo, speed and pitch ---------------------

def _tempo(factor: float) -> list[str]:
    return ["-af", f"atempo={factor}"]


def _speed(factor: float, sr: int) -> list[str]:
    return ["-af", f"asetrate={round(sr * factor)},aresample={sr}"]


def _pitch(semitones: float, sr: int) -> list[str]:
    ratio = 2 ** (semitones / 12)
    return ["-af", f"asetrate={round(sr * ratio)},aresample={sr},atempo={1 / ratio:.6f}"]


OPUS_24K = ["-c:a", "libopus", "-b:a", "24k"]

# (ffmpeg arguments, container, time scale and frequency scale the detector must report)
STRETCHES = {
    "tempo_0.9": (lambda sr: _tempo(0.9), ".wav", 1 / 0.9, 1.0),  # atempo: WSOLA, pitch kept
    "tempo_1.1": (lambda sr: _tempo(1.1), ".wav", 1 / 1.1, 1.0),
    "speed_0.9": (lambda sr: _speed(0.9, sr), ".wav", 1 / 0.9, 0.9),  # resampled: pitch moves too
    "speed_1.1": (lambda sr: _speed(1.1, sr), ".wav", 1 / 1.1, 1.1),
    "pitch_minus_2st": (lambda sr: _pitch(-2, sr), ".wav", 1.0, 2 ** (-2 / 12)),
    "pitch_plus_2st": (lambda sr: _pitch(2, sr), ".wav", 1.0, 2 ** (2 / 12)),
    # the forwarded voice note: stretched, then squeezed by a messenger's codec
    "tempo_1.1_then_opus_24k": (lambda sr: [*_tempo(1.1), *OPUS_24K], ".ogg", 1 / 1.1, 1.0),
}


@pytest.mark.parametrize("stretch", list(STRETCHES))
def test_serial_survives_time_scale_change(
    mark: PayloadMark, marked: tuple[np.ndarray, int], stretch: str, tmp_path: Path
) -> None:
    """Issue 11: a released clip made 10 % faster or slower, or re-pitched, was no longer traced."""
    samples, sr = marked
    arguments, suffix, time_scale, frequency_scale = STRETCHES[stretch]
    found = mark.detect(_through_ffmpeg(samples, sr, tmp_path, suffix, *arguments(sr)), sr)
    assert found.payload == SERIAL
    assert found.confidence >= READ_MIN_CONFIDENCE
    assert found.time_scale == pytest.approx(time_scale, abs=0.003)
    assert found.frequency_scale == pytest.approx(frequency_scale, abs=0.005)


@pytest.fixture(scope="module")
def marked_opus(marked: tuple[np.ndarray, int], tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    samples, sr = marked
    return _through_ffmpeg(samples, sr, tmp_path_factory.mktemp("opus"), ".ogg", *OPUS_24K)


def test_four_second_excerpts_after_opus_read_blind(
    mark: PayloadMark, marked: tuple[np.ndarray, int], marked_opus: np.ndarray
) -> None:
    """Twelve 4 s excerpts starting anywhere (mid-period) in the clip: most read blind, none reads wrong.

    The target is a rate (>= 95 % of 4 s excerpts, measured in scripts/bench_watermark.py), and which excerpt of
    a take misses depends on the take (Piper's generator noise makes each differ): so the test counts.
    """
    sr = marked[1]
    starts = np.linspace(0.4, len(marked_opus) / sr - 4.0, 12)
    found = [mark.detect(marked_opus[int(t * sr) : int((t + 4.0) * sr)], sr) for t in starts]
    assert {f.payload for f in found} <= {SERIAL, None}  # a miss says nothing; it never names another serial
    read = [f for f in found if f.payload == SERIAL]
    assert len(read) >= 10, [round(float(f.confidence), 1) for f in found]
    assert all(f.confidence >= READ_MIN_CONFIDENCE for f in read)


@pytest.mark.parametrize("start_s", [1.0, 6.2])
def test_three_second_excerpt_after_opus_matches_its_serial(
    mark: PayloadMark, marked: tuple[np.ndarray, int], marked_opus: np.ndarray, start_s: float
) -> None:
    """Under two periods the blind decoder can lose a paused stretch; the registry's serials still match."""
    sr = marked[1]
    excerpt = marked_opus[int(start_s * sr) : int((start_s + 3.0) * sr)]
    others = [int(s) for s in np.random.default_rng(4).integers(0, 2**32, 99)]
    found = mark.match(excerpt, sr, [*others, SERIAL])
    assert found.payload == SERIAL
    assert found.confidence >= match_threshold(100)


def test_match_reads_a_stretched_window_on_the_files_grid(
    mark: PayloadMark, marked: tuple[np.ndarray, int], tmp_path: Path
) -> None:
    """What per-window localisation does: detect once on the file, then match each window on its grid."""
    samples, sr = marked
    slower = _through_ffmpeg(samples, sr, tmp_path, ".wav", *_tempo(0.9))
    whole = mark.detect(slower, sr)
    window = slower[int(5.0 * sr) : int(8.0 * sr)]
    found = mark.match(window, sr, [SERIAL], time_scale=whole.time_scale, frequency_scale=whole.frequency_scale)
    assert found.payload == SERIAL


def _unmarked_segments(piper: np.ndarray, espeak: np.ndarray, sr: int) -> list[tuple[str, np.ndarray, int]]:
    """A modest spread of unmarked audio at lengths that switch the search on (the bench checks 2,000)."""
    rng = np.random.default_rng(11)
    segments = []
    for name, source in (("piper", piper), ("espeak", espeak)):
        for length in (3.0, 6.5, 9.0):
            start = int(rng.integers(0, len(source) - int(length * sr)))
            segments.append((f"{name} {length} s", source[start : start + int(length * sr)], sr))
    segments.append(("other key", PayloadMark(derive_key(b"another workspace secret, 32 byt")).embed(piper, sr, 5), sr))
    n = 10 * 16_000
    segments.append(("white noise", (0.1 * rng.standard_normal(n)).astype(np.float32), 16_000))
    t = np.arange(n) / 16_000
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    segments.append(("pulsed chord", (0.2 * chord).astype(np.float32), 16_000))
    segments.append(("silence", np.zeros(n, np.float32), 16_000))
    return segments


def test_unmarked_audio_reads_nothing_with_the_whole_search(
    mark: PayloadMark, piper_8s: tuple[np.ndarray, int], espeak_8s: tuple[np.ndarray, int]
) -> None:
    piper, sr = piper_8s
    espeak = resample(espeak_8s[0], espeak_8s[1], sr)
    others = [int(s) for s in np.random.default_rng(12).integers(0, 2**32, 100)]
    for name, x, rate in _unmarked_segments(piper, espeak, sr):
        assert mark.detect(x, rate).payload is None, name
        found = mark.match(x, rate, others)
        assert found.payload is None, name
        assert found.confidence < match_threshold(len(others)), name


def test_false_positive_bounds_count_every_try() -> None:
    """Blind: every grid decoded × 64 rotations × 2^-32; match: Hoeffding per (serial, alignment, rotation)."""
    assert FALSE_POSITIVE_BOUND <= 1e-6
    assert MATCH_FALSE_POSITIVES <= 1e-6
    threshold = match_threshold(100)
    assert 100 * 8 * 64 * np.exp(-threshold**2 / 2) == pytest.approx(MATCH_FALSE_POSITIVES)
    assert match_threshold(10_000) > threshold  # more serials, a higher bar
    assert MIN_SEARCH_S < 8.0  # the robustness figures are for clips of 8 s and more: all searched
