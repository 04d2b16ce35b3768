"""Payload watermark benchmark: attacks × voices, false positives, audibility, speed and collusion.

The full protocol of the issue "Provenance anyone can check":

* `--clips` distinct clips per voice (default 50), each of random sentences
  and at least 8 s long, rendered by two clearly different voices: the
  packaged Piper voice (neural VITS) and espeak-ng en-us+f3 (formant
  synthesis); each clip is marked with a fresh random key and serial;
* every attack of the issue on every marked clip, read back blind; the Perth
  presence mark goes through the same attacks beside ours (`--no-perth` skips it);
* issue 11's time-scale attacks (tempo 0.9/1.1 by atempo, 0.95 by rubberband,
  speed 0.9/1.1, pitch ±2 semitones; alone and followed by Opus 24k), and
  excerpts of 4 s and 3 s of the Opus 24k copy, read blind and by `match`
  among 100 serials;
* `--unmarked` segments (default 2,000, 2.5–14 s) of unmarked speech from both
  voices and of non-speech (noises, tones and chords, silence, clips marked
  under another key) checked for a false positive, blind with the whole
  search and by `match`; the analytic bounds are printed beside the counts;
* SNR and wideband PESQ of the mark, embed/detect speed on one core, and the
  collusion measurement (20 clips averaged).

    .venv/bin/python scripts/bench_watermark.py [--clips N] [--quick]

Clips are cached in the temp directory (`--cache`), so a rerun skips synthesis.
The full run takes about 40 minutes on two free cores (the search runs on every unmarked segment).
"""

from __future__ import annotations

import os

# One core each: the speed figures are per core, and the two workers must not fight over threads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Final  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.audio.mix import resample  # noqa: E402
from pipeline.provenance.payload import (  # noqa: E402
    FALSE_POSITIVE_BOUND,
    MATCH_FALSE_POSITIVES,
    MIN_DETECT_S,
    MIN_DURATION_S,
    MIN_SEARCH_S,
    PayloadMark,
    match_threshold,
)

CLIP_RATE: Final = 22_050  # both voices render at this rate
PEAK: Final = 10 ** (-1 / 20)  # clips are peak-normalised to -1 dBFS, as a finished render is
ESPEAK_VOICE: Final = "en-us+f3"
MIN_CLIP_S: Final = 8.0  # the robustness requirement starts at 8 s

# --- corpus ------------------------------------------------------------------

_SUBJECTS: Final = (
    "the committee", "my lawyer", "our neighbour", "the young reporter", "every volunteer", "the old teacher",
    "a quiet farmer", "the city council", "my sister", "the night nurse", "the union leader", "a local baker",
    "the judge", "our family", "the harbour master", "a tired driver", "the museum guide", "the coach",
)
_VERBS: Final = (
    "asked about", "wrote to", "argued for", "carefully read", "talked about", "waited for", "voted against",
    "praised", "questioned", "remembered", "described", "defended", "explained", "rejected", "welcomed",
)
_OBJECTS: Final = (
    "the new bridge", "a long letter", "the missing records", "the public hearing", "our small garden",
    "the winter budget", "a painful decision", "the open trial", "the river project", "a second opinion",
    "the school library", "the railway timetable", "an honest answer", "the festival plans", "the old factory",
)
_TAILS: Final = (
    "before the meeting ended", "on a rainy Tuesday", "in front of the press", "after many weeks of silence",
    "without any warning", "for the third time this year", "with great patience", "late in the evening",
    "in the crowded hall", "as the sun went down", "during the long winter", "at the edge of town",
)


def sentence_text(rng: np.random.Generator, sentences: int) -> str:
    """A few distinct English sentences drawn from small word lists (seeded: reruns give the same clips)."""
    out = []
    for _ in range(sentences):
        parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_TAILS)]
        text = " ".join(str(p) for p in parts)
        out.append(text[0].upper() + text[1:] + ".")
    return " ".join(out)


def _peak_normalise(x: np.ndarray) -> np.ndarray:
    return (x * (PEAK / max(float(np.abs(x).max()), 1e-9))).astype(np.float32)


_PIPER = None


def piper_clip(text: str) -> np.ndarray:
    """The packaged joe voice at CLIP_RATE."""
    from piper import PiperVoice, SynthesisConfig

    from pipeline.synth import packaged_voice

    global _PIPER  # noqa: PLW0603 - one voice per worker process
    if _PIPER is None:
        onnx, config = packaged_voice()
        _PIPER = PiperVoice.load(str(onnx), config_path=str(config))
    chunks = [c.audio_float_array for c in _PIPER.synthesize(text, syn_config=SynthesisConfig(normalize_audio=False))]
    return _peak_normalise(np.concatenate(chunks))


def espeak_clip(text: str) -> np.ndarray:
    """espeak-ng's en-us+f3 (formant synthesis, a female variant): nothing like the neural voice."""
    from pipeline.export.probe import decode

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "e.wav"
        subprocess.run(["espeak-ng", "-v", ESPEAK_VOICE, "-w", str(wav), text], check=True, capture_output=True)
        samples, _ = decode(wav, CLIP_RATE)
    return _peak_normalise(samples)


VOICES: Final[dict[str, Callable[[str], np.ndarray]]] = {"piper-joe": piper_clip, "espeak-f3": espeak_clip}


def clip_for(voice: str, index: int, cache: Path) -> np.ndarray:
    """Clip `index` of `voice`: distinct sentences, one after another, until it lasts at least 8 s.

    Sentences are rendered one at a time and cached as .npy, so a rerun (or the
    other voice) does not pay for synthesis again.
    """
    rng = np.random.default_rng([index, 7])
    pieces: list[np.ndarray] = []
    pause = np.zeros(int(0.25 * CLIP_RATE), np.float32)
    while sum(len(p) for p in pieces) - len(pause) < MIN_CLIP_S * CLIP_RATE:
        text = sentence_text(rng, 1)
        path = cache / f"{voice}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npy"
        if path.exists():
            speech = np.load(path)
        else:
            speech = VOICES[voice](text)
            np.save(path, speech)
        pieces += [speech, pause]
    return _peak_normalise(np.concatenate(pieces[:-1]))


# --- attacks -----------------------------------------------------------------


def _ffmpeg_roundtrip(x: np.ndarray, sr: int, steps: list[tuple[str, list[str]]]) -> np.ndarray:
    """Encode and decode through each (suffix, encoder args) in turn, via temp files, back at `sr`."""
    from pipeline.export.probe import decode

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.wav"
        _write_wav(source, x, sr)
        for number, (suffix, args) in enumerate(steps):
            target = Path(tmp) / f"step{number}{suffix}"
            command = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(source), "-ac", "1", *args, str(target)]
            subprocess.run(command, check=True, capture_output=True)
            source = target
        out, _ = decode(source, sr)
    return out


def _write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    import soundfile

    soundfile.write(str(path), np.clip(x, -1.0, 1.0), sr, subtype="PCM_16")


MP3_64: Final = (".mp3", ["-c:a", "libmp3lame", "-b:a", "64k"])
OPUS_24: Final = (".ogg", ["-c:a", "libopus", "-b:a", "24k"])
OPUS_32: Final = (".ogg", ["-c:a", "libopus", "-b:a", "32k"])
AAC_64: Final = (".m4a", ["-c:a", "aac", "-b:a", "64k"])


def _noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    power = float(np.mean(x.astype(np.float64) ** 2))
    return (x + rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr_db / 10))).astype(np.float32)


def _resample_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Through ffmpeg's own resampler (not ours: the detector must not rely on its own filter)."""
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "16k.wav"
        _write_wav(Path(tmp) / "in.wav", x, sr)
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(Path(tmp) / "in.wav"), "-ar", "16000",
                        "-c:a", "pcm_f32le", str(mid)], check=True, capture_output=True)
        from pipeline.export.probe import decode

        out, _ = decode(mid, sr)
    return out


ATTACKS: Final[dict[str, Callable[[np.ndarray, int, int], np.ndarray]]] = {
    "none": lambda x, sr, seed: x,
    "MP3 64k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [MP3_64]),
    "Opus 24k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [OPUS_24]),
    "Opus 32k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [OPUS_32]),
    "AAC 64k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [AAC_64]),
    "resample 16k": lambda x, sr, seed: _resample_16k(x, sr),
    "noise 20 dB": lambda x, sr, seed: _noise(x, 20.0, seed),
    "cut 1 s start": lambda x, sr, seed: x[sr:],
    "cut 1 s end": lambda x, sr, seed: x[:-sr],
    "gain +6 dB": lambda x, sr, seed: np.clip(x * 10 ** (6 / 20), -1.0, 1.0).astype(np.float32),
    "gain -6 dB": lambda x, sr, seed: (x * 10 ** (-6 / 20)).astype(np.float32),
    "Opus 32k → MP3 64k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [OPUS_32, MP3_64]),
}


def _tempo(factor: float, *, rubberband: bool = False) -> tuple[str, list[str]]:
    """Tempo change, pitch kept: ffmpeg's atempo (WSOLA) or rubberband (phase vocoder), to WAV."""
    spec = f"rubberband=tempo={factor}" if rubberband else f"atempo={factor}"
    return ".wav", ["-af", spec]


def _speed(factor: float, sr: int) -> tuple[str, list[str]]:
    """Played fast or slow: resampled, so the pitch moves with it (a tape or a turntable)."""
    return ".wav", ["-af", f"asetrate={round(sr * factor)},aresample={sr}"]


def _pitch(semitones: float, sr: int, *, rubberband: bool = False) -> tuple[str, list[str]]:
    """Pitch shift, duration kept: speed by the ratio, then atempo back (or rubberband's pitch)."""
    ratio = 2 ** (semitones / 12)
    if rubberband:
        return ".wav", ["-af", f"rubberband=pitch={ratio:.6f}"]
    return ".wav", ["-af", f"asetrate={round(sr * ratio)},aresample={sr},atempo={1 / ratio:.6f}"]


#: The time-scale attacks of issue 11, alone and followed by Opus 24k.
STRETCH_ATTACKS: Final[dict[str, Callable[[np.ndarray, int, int], np.ndarray]]] = {
    "tempo 0.90": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_tempo(0.9)]),
    "tempo 1.10": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_tempo(1.1)]),
    "tempo 0.90 → Opus 24k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_tempo(0.9), OPUS_24]),
    "tempo 1.10 → Opus 24k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_tempo(1.1), OPUS_24]),
    "tempo 0.95 rubberband → Opus 24k": lambda x, sr, seed: _ffmpeg_roundtrip(
        x, sr, [_tempo(0.95, rubberband=True), OPUS_24]),
    "speed 0.90": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_speed(0.9, sr)]),
    "speed 1.10": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_speed(1.1, sr)]),
    "speed 0.90 → Opus 24k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_speed(0.9, sr), OPUS_24]),
    "speed 1.10 → Opus 24k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_speed(1.1, sr), OPUS_24]),
    "pitch −2 st": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_pitch(-2, sr)]),
    "pitch +2 st": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_pitch(2, sr)]),
    "pitch −2 st → Opus 24k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_pitch(-2, sr), OPUS_24]),
    "pitch +2 st → Opus 24k": lambda x, sr, seed: _ffmpeg_roundtrip(x, sr, [_pitch(2, sr), OPUS_24]),
    "pitch +2 st rubberband → Opus 24k": lambda x, sr, seed: _ffmpeg_roundtrip(
        x, sr, [_pitch(2, sr, rubberband=True), OPUS_24]),
}
ALL_ATTACKS: Final = {**ATTACKS, **STRETCH_ATTACKS}
#: Excerpt lengths (s) cut at random from the clip after Opus 24k, read blind and by `match`.
EXCERPTS: Final = (4.0, 3.0)
EXCERPTS_PER_LENGTH: Final = 3
#: Serials `match` is given: the clip's own among this many (a workspace's registry of clips and copies).
MATCH_CANDIDATES: Final = 100


# --- one marked clip through every attack -------------------------------------

_PERTH = None


def _perth():
    """Perth, loaded once per worker (torch on one thread)."""
    global _PERTH  # noqa: PLW0603 - one network per worker process
    if _PERTH is None:
        import torch

        from pipeline.provenance.presence import PresenceMark

        torch.set_num_threads(1)
        _PERTH = PresenceMark().load()
    return _PERTH


@dataclass(frozen=True)
class Trial:
    """One clip of one voice, marked with a fresh key and serial, read back after every attack."""

    voice: str
    index: int
    duration_s: float
    snr_db: float
    pesq_wb: float
    clean_confidence: float
    embed_cpu_s: float
    detect_cpu_s: float
    ours: dict[str, tuple[bool, float]]  # attack -> (exact payload read, confidence)
    excerpts: dict[tuple[float, str], list[tuple[bool, float]]]  # (length, "blind"/"match") -> reads
    perth: dict[str, float]  # attack -> presence score; "unmarked" is the clip before marking


def run_trial(voice: str, index: int, cache: str, seed: int, with_perth: bool) -> Trial:
    from pesq import pesq

    x = clip_for(voice, index, Path(cache))
    sr = CLIP_RATE
    rng = np.random.default_rng([seed, index, list(VOICES).index(voice)])
    mark = PayloadMark(rng.bytes(32))
    serial = int(rng.integers(0, 2**32))
    started = time.process_time()
    marked = mark.embed(x, sr, serial)
    embed_cpu = time.process_time() - started
    started = time.process_time()
    clean = mark.detect(marked, sr)
    detect_cpu = time.process_time() - started
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((marked - x).astype(np.float64) ** 2))
    quality = pesq(16_000, resample(x, sr, 16_000), resample(marked, sr, 16_000), "wb")
    ours: dict[str, tuple[bool, float]] = {}
    perth: dict[str, float] = {}
    perth_marked = None
    if with_perth:
        presence = _perth()
        perth["unmarked"] = presence.detect(x, sr)
        perth_marked = presence.embed(x, sr)
    for name, attack in ALL_ATTACKS.items():
        attack_seed = int(rng.integers(0, 2**31))  # a fresh noise draw per clip and attack
        found = mark.detect(attack(marked, sr, attack_seed), sr)
        ours[name] = (found.payload == serial, found.confidence)
        if perth_marked is not None and name in ATTACKS:
            perth[name] = _perth().detect(attack(perth_marked, sr, attack_seed), sr)
    opus = ATTACKS["Opus 24k"](marked, sr, 0)
    candidates = [serial, *(int(c) for c in rng.integers(0, 2**32, MATCH_CANDIDATES - 1))]
    excerpts: dict[tuple[float, str], list[tuple[bool, float]]] = {}
    for length in EXCERPTS:
        n = int(length * sr)
        for _ in range(EXCERPTS_PER_LENGTH):
            start = int(rng.integers(0, len(opus) - n))
            piece = opus[start : start + n]
            blind = mark.detect(piece, sr)
            known = mark.match(piece, sr, candidates)
            excerpts.setdefault((length, "blind"), []).append((blind.payload == serial, blind.confidence))
            excerpts.setdefault((length, "match"), []).append((known.payload == serial, known.confidence))
    return Trial(voice, index, len(x) / sr, float(snr), float(quality), clean.confidence, embed_cpu, detect_cpu,
                 ours, excerpts, perth)


# --- false positives ------------------------------------------------------------

FP_KINDS: Final = ("speech", "speech MP3 64k", "other key", "noise", "tones", "silence")


def _share(total: int) -> dict[str, int]:
    """How many of `total` unmarked segments of each kind (speech: a third; the rest non-speech)."""
    weights = {"speech": 6, "speech MP3 64k": 2, "other key": 3, "noise": 4, "tones": 4, "silence": 1}
    counts = {kind: total * w // sum(weights.values()) for kind, w in weights.items()}
    counts["speech"] += total - sum(counts.values())
    return counts


def _pad_to(x: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    return np.pad(x, (0, max(0, int(seconds * sr) - len(x))))


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ∝ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    shaped = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return shaped / (np.std(shaped) + 1e-12)


def _tones(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Music-like: a random melody and chords of harmonic notes with attack/decay envelopes."""
    out = np.zeros(n)
    t = 0
    while t < n:
        length = int(rng.uniform(0.1, 0.9) * sr)
        notes = rng.integers(40, 88, size=int(rng.integers(1, 5)))
        time_axis = np.arange(min(length, n - t)) / sr
        envelope = np.minimum(1.0, time_axis / 0.01) * np.exp(-time_axis * rng.uniform(1, 8))
        for note in notes:
            f0 = 440.0 * 2 ** ((note - 69) / 12)
            for harmonic in range(1, 8):
                if harmonic * f0 < sr / 2:
                    partial = np.sin(2 * np.pi * harmonic * f0 * time_axis) / harmonic**1.5
                    out[t : t + len(time_axis)] += envelope * partial
        t += length
    return out / (np.abs(out).max() + 1e-12)


def fp_segment(kind: str, index: int, clips: int, cache: str, seed: int) -> tuple[str, bool, float, float, bool, float]:
    """Check one unmarked segment with a fresh random key, blind (the whole search) and by `match` with
    MATCH_CANDIDATES serials: (kind, false positive?, confidence, duration, match false positive?, its confidence)."""
    rng = np.random.default_rng([seed, index, FP_KINDS.index(kind), 99])
    key = rng.bytes(32)
    duration = float(rng.uniform(MIN_DETECT_S, 14.0))
    if kind in ("speech", "speech MP3 64k", "other key"):
        voice = str(rng.choice(list(VOICES)))
        x = clip_for(voice, int(rng.integers(0, clips)), Path(cache))
        sr = CLIP_RATE
        start = int(rng.integers(0, max(1, len(x) - int(MIN_DETECT_S * sr))))
        x = x[start : start + int(duration * sr)]
        if len(x) < MIN_DETECT_S * sr:
            x = np.pad(x, (0, int(MIN_DETECT_S * sr) - len(x)))
        if kind == "speech MP3 64k":
            x = ATTACKS["MP3 64k"](x, sr, index)
        elif kind == "other key":
            x = _pad_to(x, sr, MIN_DURATION_S)  # the embedder marks clips of 4 s or more
            x = PayloadMark(rng.bytes(32)).embed(x, sr, int(rng.integers(0, 2**32)))
    else:
        sr = int(rng.choice([16_000, 22_050, 44_100, 48_000]))
        n = int(duration * sr)
        if kind == "noise":
            x = _coloured_noise(rng, n, float(rng.choice([0.0, 1.0, 2.0])))
            if rng.random() < 0.5:  # bursts, like traffic or wind
                x *= np.repeat(rng.random(n // 2000 + 1) ** 2, 2000)[:n]
        elif kind == "tones":
            x = _tones(rng, n, sr)
        else:
            x = np.zeros(n) if rng.random() < 0.5 else rng.standard_normal(n) * 10 ** (-90 / 20)
        if kind != "silence":
            x = x * (10 ** (rng.uniform(-30, -1) / 20) / np.abs(x).max())
    mark = PayloadMark(key)
    found = mark.detect(x.astype(np.float32), sr)
    known = mark.match(x.astype(np.float32), sr, [int(c) for c in rng.integers(0, 2**32, MATCH_CANDIDATES)])
    return kind, found.payload is not None, found.confidence, len(x) / sr, known.payload is not None, known.confidence


# --- collusion -----------------------------------------------------------------

ATTACK_FRAME: Final = 512
ATTACK_HOP: Final = 128


def _attacker_tiles(y: np.ndarray, sr: int) -> np.ndarray:
    """The attacker's view (he knows the design, not the key): folded band-level residuals, (64, bands)."""
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import stft

    from pipeline.provenance.payload import BANDS, BINS_PER_BAND, FIRST_BIN, MESSAGE_BITS

    _, _, spec = stft(resample(y, sr, 16_000), nperseg=ATTACK_FRAME, noverlap=ATTACK_FRAME - ATTACK_HOP,
                      boundary=None, padded=False)
    power = np.abs(spec[FIRST_BIN : FIRST_BIN + BANDS * BINS_PER_BAND]) ** 2  # (bins, frames)
    bands = power.reshape(BANDS, BINS_PER_BAND, -1).sum(axis=1).T  # (frames, bands)
    n_tiles = len(bands) // 4
    level = np.log(bands[: 4 * n_tiles].reshape(n_tiles, 4, BANDS).sum(axis=1) + 1e-10)
    residual = level - uniform_filter1d(level, 9, axis=1, mode="nearest")
    folded = np.zeros((MESSAGE_BITS, BANDS))
    np.add.at(folded, np.arange(n_tiles) % MESSAGE_BITS, residual)
    return folded / (np.std(folded) + 1e-12)


def _remove(y: np.ndarray, sr: int, estimate: np.ndarray, depth: float) -> np.ndarray:
    """The attacker's removal: scale each tile by exp(-depth·sign(estimate)), the inverse of the mark."""
    from scipy.signal import istft, stft

    from pipeline.provenance.payload import BANDS, BINS_PER_BAND, FIRST_BIN, MESSAGE_BITS

    y16 = resample(y, sr, 16_000)
    # scipy's frame j is centred on sample 128·j, the mark's on 128·j + 64: tile = (128·j + 64) // 512
    _, _, spec = stft(y16, nperseg=ATTACK_FRAME, noverlap=ATTACK_FRAME - ATTACK_HOP)
    tiles = (ATTACK_HOP * np.arange(spec.shape[1]) + ATTACK_HOP // 2) // 512
    gain = np.exp(-depth * np.sign(estimate[tiles % MESSAGE_BITS]))  # (frames, bands)
    spec[FIRST_BIN : FIRST_BIN + BANDS * BINS_PER_BAND] *= np.repeat(gain.T, BINS_PER_BAND, axis=0)
    _, out = istft(spec, nperseg=ATTACK_FRAME, noverlap=ATTACK_FRAME - ATTACK_HOP)
    return _fit_length(resample(out[: len(y16)].astype(np.float32), 16_000, sr), len(y))


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@dataclass(frozen=True)
class Collusion:
    case: str
    depth: float  # the attacker's gain, exp(±depth) per tile
    pattern_corr_member: float  # average of the 20 true patterns vs each of them
    pattern_corr_fresh: float  # ... vs the pattern of a 21st clip
    estimate_corr_fresh: float  # the attacker's estimate (from the audio) vs the 21st clip's pattern
    read_before: tuple[bool, float]  # the 21st clip, as marked
    read_after_removal: tuple[bool, float]  # ... after the inverse of the estimate is applied
    forged: tuple[bool, float]  # an unmarked clip with the estimate applied: does it read as a member's serial?


def collusion(cache: Path, seed: int, members: int = 20, depths: tuple[float, ...] = (0.7, 1.0)) -> list[Collusion]:
    """Average `members` marked clips (same key) to estimate the pattern, then use it on other clips.

    Case "distinct serials" is how voxgate marks (a serial per clip). Case
    "one fixed pattern" reuses one serial for every clip, which is what any
    design with a key-only pattern looks like to this attacker. The attacker
    knows the design (tile grid, bands, period), not the key.
    """
    from pipeline.provenance import payload_code
    from pipeline.provenance.payload import BANDS

    rng = np.random.default_rng([seed, 2024])
    mark = PayloadMark(rng.bytes(32))
    keys = payload_code.CodeKeys.derive(mark.key, BANDS)
    voices = list(VOICES)
    sources = [clip_for(voices[i % 2], 100 + i, cache) for i in range(members + 2)]
    results = []
    for case in ("distinct serials", "one fixed pattern"):
        serials = [int(s) for s in rng.integers(0, 2**32, size=members + 1)]
        if case == "one fixed pattern":
            serials = [serials[0]] * (members + 1)
        patterns = [payload_code.chips(payload_code.seal(s, keys), keys) for s in serials]
        marked = [mark.embed(x, CLIP_RATE, s) for x, s in zip(sources[: members + 1], serials, strict=True)]
        mean_pattern = np.mean(patterns[:members], axis=0)
        estimate = np.mean([_attacker_tiles(y, CLIP_RATE) for y in marked[:members]], axis=0)
        fresh = marked[members]
        before = mark.detect(fresh, CLIP_RATE)
        for depth in depths:
            after = mark.detect(_remove(fresh, CLIP_RATE, estimate, depth), CLIP_RATE)
            forged = mark.detect(_remove(sources[members + 1], CLIP_RATE, estimate, -depth), CLIP_RATE)
            results.append(Collusion(
                case,
                depth,
                float(np.mean([_corr(mean_pattern, p) for p in patterns[:members]])),
                _corr(mean_pattern, patterns[members]),
                _corr(estimate, patterns[members]),
                (before.payload == serials[members], before.confidence),
                (after.payload == serials[members], after.confidence),
                (forged.payload in serials, forged.confidence),
            ))
    return results


# --- the run ---------------------------------------------------------------------


def _worker_init() -> None:
    """Quiet logs, and one warm-up call so imports do not count as embedding time."""
    import logging

    logging.disable(logging.WARNING)
    noise = np.random.default_rng(0).standard_normal(5 * CLIP_RATE).astype(np.float32) * 0.1
    mark = PayloadMark(bytes(32))
    mark.detect(mark.embed(noise, CLIP_RATE, 1), CLIP_RATE)


def main() -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=50, help="distinct clips per voice (default 50)")
    parser.add_argument("--unmarked", type=int, default=2000, help="unmarked segments checked (default 2000)")
    parser.add_argument("--quick", action="store_true", help="4 clips per voice, 100 unmarked segments, no Perth")
    parser.add_argument("--no-perth", action="store_true", help="skip the Perth column")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one core each (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of keys, serials and segments (default 1)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "voxgate-bench-clips")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.unmarked, args.no_perth = 4, 100, True
    args.cache.mkdir(parents=True, exist_ok=True)
    console = Console()
    if not console.is_terminal:  # piped to a file: do not squeeze the tables into 80 columns
        console = Console(width=160)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    started = time.perf_counter()
    pool = ProcessPoolExecutor(args.workers, initializer=_worker_init)
    with pool, Progress(*columns, console=console) as bar:
        jobs = [(v, i) for i in range(args.clips) for v in VOICES]
        extra = [(list(VOICES)[i % 2], 100 + i) for i in range(22)]  # the collusion set
        task = bar.add_task("synthesising clips", total=len(jobs) + len(extra))
        for _ in pool.map(clip_for, *zip(*(jobs + extra), strict=True), [args.cache] * (len(jobs) + len(extra))):
            bar.advance(task)
        task = bar.add_task("marked clips × attacks", total=len(jobs))
        futures = [pool.submit(run_trial, v, i, str(args.cache), args.seed, not args.no_perth) for v, i in jobs]
        trials = []
        for future in futures:
            trials.append(future.result())
            bar.advance(task)
        task = bar.add_task("unmarked segments", total=args.unmarked)
        segments = [(kind, i) for kind, count in _share(args.unmarked).items() for i in range(count)]
        fp_futures = [pool.submit(fp_segment, k, i, args.clips, str(args.cache), args.seed) for k, i in segments]
        checks = []
        for future in fp_futures:
            checks.append(future.result())
            bar.advance(task)
        task = bar.add_task("collusion", total=1)
        colluded = collusion(args.cache, args.seed)
        bar.advance(task)
    report(console, trials, checks, colluded, with_perth=not args.no_perth)
    console.print(f"[dim]{len(trials)} marked clips, {len(checks)} unmarked segments, "
                  f"{time.perf_counter() - started:.0f} s with {args.workers} workers[/dim]")


def report(console, trials: list[Trial], checks: list, colluded: list[Collusion], *, with_perth: bool) -> None:
    from rich.table import Table

    voices = list(VOICES)
    lengths = [t.duration_s for t in trials]
    whole = f"{min(lengths):.0f}–{max(lengths):.0f} s"
    table = Table(title=f"Payload read back exactly (ours, ≥ 99 % required; excerpts ≥ 95 %) and Perth presence "
                        f"(score ≥ 0.5), {len(trials) // 2} clips per voice")
    for name in ("attack", "clip length", "recovery"):
        table.add_column(name)
    for voice in voices:
        table.add_column(f"ours {voice}", justify="right")
    table.add_column("ours conf. min / median", justify="right")
    if with_perth:
        for voice in voices:
            table.add_column(f"Perth {voice}", justify="right")
        table.add_column("Perth score min", justify="right")
    failures = []

    def rate_cell(outcomes: list[bool], required: float) -> str:
        rate = sum(outcomes) / max(len(outcomes), 1)
        style = "green" if rate >= required else "red"
        return f"[{style}]{sum(outcomes)}/{len(outcomes)} ({100 * rate:.0f} %)[/{style}]"

    for attack in ALL_ATTACKS:
        row = [attack, whole, "blind"]
        for voice in voices:
            row.append(rate_cell([t.ours[attack][0] for t in trials if t.voice == voice], 0.99))
            failures += [(t.voice, t.index, attack, t.ours[attack][1]) for t in trials
                         if t.voice == voice and not t.ours[attack][0]]
        confidence = [t.ours[attack][1] for t in trials]
        row.append(f"{min(confidence):.1f} / {np.median(confidence):.1f}")
        if with_perth and attack in ATTACKS:
            for voice in voices:
                scores = [t.perth[attack] for t in trials if t.voice == voice]
                row.append(f"{sum(s >= 0.5 for s in scores)}/{len(scores)}")
            row.append(f"{min(t.perth[attack] for t in trials):.2f}")
        table.add_row(*row)
    for length in EXCERPTS:
        for recovery in ("blind", "match"):
            label = "blind" if recovery == "blind" else f"match (1 of {MATCH_CANDIDATES} serials)"
            row = ["excerpt → Opus 24k", f"{length:.0f} s", label]
            for voice in voices:
                row.append(rate_cell([ok for t in trials if t.voice == voice
                                      for ok, _ in t.excerpts[(length, recovery)]], 0.95))
            confidence = [z for t in trials for _, z in t.excerpts[(length, recovery)]]
            row.append(f"{min(confidence):.1f} / {np.median(confidence):.1f}")
            table.add_row(*row)
    if with_perth:
        unmarked = [t.perth["unmarked"] for t in trials]
        table.add_row("(Perth on the unmarked clip)", "", "", *[""] * (len(voices) + 1),
                      *[f"{sum(t.perth['unmarked'] >= 0.5 for t in trials if t.voice == v)} FP" for v in voices],
                      f"max {max(unmarked):.3f}")
    console.print(table)
    for voice, index, attack, confidence in failures:
        console.print(f"[red]missed[/red] {voice} clip {index} after {attack} (confidence {confidence:.1f})")

    table = Table(title=f"False positives: unmarked segments ({MIN_DETECT_S:g}–14 s), each checked with a fresh "
                        f"random key, blind (search on from {MIN_SEARCH_S:g} s) and by match ({MATCH_CANDIDATES} serials)")
    for name in ("kind", "segments", "seconds", "blind FP", "blind conf. max", "match FP", "match conf. max"):
        table.add_column(name, justify="right" if name != "kind" else "left")
    for kind in FP_KINDS:
        rows = [c for c in checks if c[0] == kind]
        if rows:
            table.add_row(kind, str(len(rows)), f"{sum(c[3] for c in rows):.0f}", str(sum(c[1] for c in rows)),
                          f"{max(c[2] for c in rows):.1f}", str(sum(c[4] for c in rows)),
                          f"{max(c[5] for c in rows):.2f}")
    table.add_row("[b]all[/b]", f"[b]{len(checks)}[/b]", f"{sum(c[3] for c in checks):.0f}",
                  f"[b]{sum(c[1] for c in checks)}[/b]", "", f"[b]{sum(c[4] for c in checks)}[/b]", "")
    console.print(table)
    console.print(f"Design bound, blind: {FALSE_POSITIVE_BOUND:.2e} per checked clip ((8 alignments as embedded + "
                  f"8 searched grids) × 64 rotations × 2^-32 tag); expected in {len(checks)} checks: "
                  f"{FALSE_POSITIVE_BOUND * len(checks):.1e}")
    console.print(f"Design bound, match: {MATCH_FALSE_POSITIVES:.0e} per call (Hoeffding; threshold "
                  f"{match_threshold(MATCH_CANDIDATES):.2f} for {MATCH_CANDIDATES} serials × 8 alignments × 64 "
                  f"rotations); expected in {len(checks)} checks: {MATCH_FALSE_POSITIVES * len(checks):.1e}")

    table = Table(title="Audibility (mark vs unmarked clip) and speed (CPU seconds on one core)")
    for name in ("voice", "SNR dB min / median", "PESQ wb min / median", "clean conf. min",
                 "embed × real time", "detect × real time"):
        table.add_column(name, justify="right" if name != "voice" else "left")
    for voice in voices:
        rows = [t for t in trials if t.voice == voice]
        seconds = sum(t.duration_s for t in rows)
        table.add_row(voice, f"{min(t.snr_db for t in rows):.1f} / {np.median([t.snr_db for t in rows]):.1f}",
                      f"{min(t.pesq_wb for t in rows):.2f} / {np.median([t.pesq_wb for t in rows]):.2f}",
                      f"{min(t.clean_confidence for t in rows):.1f}",
                      f"{seconds / sum(t.embed_cpu_s for t in rows):.0f}×",
                      f"{seconds / sum(t.detect_cpu_s for t in rows):.0f}×")
    console.print(table)

    table = Table(title="Collusion: 20 marked clips (same key) averaged; the estimate is inverted on a 21st "
                        "marked clip (removal) and applied to an unmarked one (forgery); read (confidence)")
    for name in ("case", "attack gain", "avg pattern vs members", "avg pattern vs 21st", "attacker estimate vs 21st",
                 "21st read", "21st after removal", "forged onto unmarked"):
        table.add_column(name, justify="right" if name != "case" else "left")
    for c in colluded:
        reads = (c.read_before, c.read_after_removal, c.forged)
        table.add_row(c.case, f"±{20 * c.depth / np.log(10):.0f} dB", f"{c.pattern_corr_member:.3f}",
                      f"{c.pattern_corr_fresh:+.3f}", f"{c.estimate_corr_fresh:+.3f}",
                      *(f"{'yes' if ok else 'no'} ({z:.1f})" for ok, z in reads))
    console.print(table)


if __name__ == "__main__":
    main()
