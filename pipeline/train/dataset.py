"""Training data from a voice's enrolled recordings: checked, resampled, trimmed, split and filtered.

Every recording's bytes are hashed as they are read and must match the
sha256 the enrollment recorded, so nothing the owner did not enrol can reach
the trainer, not even a file swapped after the check in the service.

Models have length limits and Coqui enforces them silently: XTTS's GPT
trainer skips clips over about 11.6 s without a word, and VITS's dataset
drops clips outside `min_audio_len`/`max_audio_len`. We apply the model's
limits here instead, and count every clip we drop and why, so the operator
sees how much of the enrollment actually trains the model.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Final, Protocol

import numpy as np

from pipeline.audio.mix import resample
from pipeline.errors import ConsentError, InputError, StoreError

logger = logging.getLogger(__name__)

FRAME_S: Final = 0.010
"""Analysis hop for silence detection: fine enough to cut between words."""

SILENCE_BELOW_DB: Final = 40.0
"""A frame this far under the recording's loudest frame counts as silence (librosa's `top_db` default)."""

EDGE_MARGIN_S: Final = 0.05
"""Silence kept before the first and after the last word, so onsets and releases are not clipped."""

MIN_PAUSE_S: Final = 0.20
"""The shortest silence a long recording may be split at: shorter gaps are usually inside words."""

SNAP_TOLERANCE: Final = 0.15
"""How far (as a share of the recording) a sentence boundary may lie from the pause it is cut at."""

SNAP_TOLERANCE_MIN_S: Final = 1.0


class Recording(Protocol):
    """An enrolled recording, as `pipeline.services.recordings.enrolled_recordings` returns it."""

    @property
    def path(self) -> Path: ...

    @property
    def sha256(self) -> str: ...

    @property
    def transcript(self) -> str: ...


@dataclass(frozen=True)
class ClipLimits:
    """What a model can train on: its sample rate and the clip lengths it accepts."""

    sample_rate: int
    min_s: float
    max_s: float
    max_text_chars: int


class DropReason(str, Enum):
    """Why a recording, or a piece of one, did not make it into the training set."""

    SILENT = "silent (nothing above the silence threshold)"
    NO_TRANSCRIPT = "no transcript"
    TOO_SHORT = "shorter than the model's minimum length"
    TOO_LONG = "longer than the model's maximum and no pause to split at"
    TEXT_TOO_LONG = "transcript longer than the model's maximum"


@dataclass(frozen=True)
class Clip:
    """One prepared training clip: a wav at the model's rate and its text."""

    path: Path
    text: str
    duration_s: float
    source_sha256: str


@dataclass(frozen=True)
class Dropped:
    """A recording or piece left out, with the reason and its length before it was dropped."""

    source: Path
    reason: DropReason
    duration_s: float


@dataclass
class DatasetReport:
    """What went in, what came out and what was dropped."""

    limits: ClipLimits
    clips: list[Clip] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    recordings: int = 0
    split: int = 0
    """Recordings that were longer than `limits.max_s` and were split at pauses."""
    input_s: float = 0.0

    @property
    def kept_s(self) -> float:
        return sum(clip.duration_s for clip in self.clips)

    def dropped_by_reason(self) -> dict[str, int]:
        return dict(Counter(d.reason.value for d in self.dropped))

    def to_dict(self) -> dict[str, object]:
        return {
            "recordings": self.recordings,
            "clips": len(self.clips),
            "split_recordings": self.split,
            "input_s": round(self.input_s, 2),
            "kept_s": round(self.kept_s, 2),
            "dropped": self.dropped_by_reason(),
            "dropped_s": round(sum(d.duration_s for d in self.dropped), 2),
            "limits": {"sample_rate": self.limits.sample_rate, "min_s": self.limits.min_s,
                       "max_s": self.limits.max_s, "max_text_chars": self.limits.max_text_chars},
            "source_sha256": sorted({c.source_sha256 for c in self.clips}),
        }


def prepare(
    recordings: Sequence[Recording], out_dir: Path, limits: ClipLimits, *, language: str = "en"
) -> DatasetReport:
    """Write the training clips for `recordings` into `out_dir` and report what was kept and dropped.

    Raises ConsentError if a recording's bytes do not match its enrolled
    sha256, and InputError if nothing is left to train on.
    """
    import soundfile

    out_dir.mkdir(parents=True, exist_ok=True)
    report = DatasetReport(limits=limits, recordings=len(recordings))
    for number, recording in enumerate(recordings):
        audio = _read_enrolled(recording, limits.sample_rate)
        duration = audio.size / limits.sample_rate
        report.input_s += duration
        text = " ".join(recording.transcript.split())
        if not text:
            report.dropped.append(Dropped(recording.path, DropReason.NO_TRANSCRIPT, duration))
            continue
        speech = _trim(audio, limits.sample_rate)
        if speech is None:
            report.dropped.append(Dropped(recording.path, DropReason.SILENT, duration))
            continue
        pieces = [(speech, text)]
        if speech.size / limits.sample_rate > limits.max_s:
            pieces, left_out = _split_at_pauses(speech, text, limits, language)
            report.split += bool(pieces)
            report.dropped.extend(Dropped(recording.path, reason, s) for reason, s in left_out)
        for piece_number, (piece, piece_text) in enumerate(pieces):
            piece_s = piece.size / limits.sample_rate
            reason = _out_of_limits(piece_s, piece_text, limits)
            if reason is not None:
                report.dropped.append(Dropped(recording.path, reason, piece_s))
                continue
            path = out_dir / f"{number:04d}-{piece_number:02d}.wav"
            soundfile.write(path, piece, limits.sample_rate, subtype="PCM_16")
            report.clips.append(Clip(path, piece_text, piece_s, recording.sha256.lower()))
    if report.dropped:
        logger.warning("Dropped %d clip(s) from training: %s", len(report.dropped), report.dropped_by_reason())
    if not report.clips:
        raise InputError(
            f"None of the {len(recordings)} enrolled recording(s) fits the model's limits "
            f"({limits.min_s:g}-{limits.max_s:g} s, at most {limits.max_text_chars} characters): "
            f"{report.dropped_by_reason()}; enrol more recordings of one to ten sentences each."
        )
    return report


def _read_enrolled(recording: Recording, sample_rate: int) -> np.ndarray:
    """Read the file once, check its hash against the enrollment, decode to mono at `sample_rate`."""
    import soundfile

    try:
        data = recording.path.read_bytes()
    except OSError as exc:
        raise StoreError(
            f"Enrolled recording {recording.path} cannot be read ({exc.strerror}); restore it from the enrollment."
        ) from exc
    found = hashlib.sha256(data).hexdigest()
    if found != recording.sha256.strip().lower():
        raise ConsentError(
            f"{recording.path} is not covered by the voice's enrollment: its sha256 is {found}, the enrollment "
            f"recorded {recording.sha256}; train only on recordings enrolled with the owner's consent."
        )
    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"Enrolled recording {recording.path} is not a readable audio file: {exc}.") from exc
    return resample(audio.mean(axis=1), rate, sample_rate)


def _frame_db(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """RMS level of each analysis frame in dB relative to the loudest frame, and the hop in samples."""
    hop = max(1, round(FRAME_S * sample_rate))
    frames = audio[: audio.size // hop * hop].reshape(-1, hop)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)) + 1e-10
    return 20 * np.log10(rms / rms.max()), hop


def _trim(audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
    """Cut leading and trailing silence, keeping `EDGE_MARGIN_S`; None if nothing is above the threshold."""
    if audio.size == 0 or not np.any(audio):
        return None
    db, hop = _frame_db(audio, sample_rate)
    loud = np.flatnonzero(db > -SILENCE_BELOW_DB)
    if loud.size == 0:
        return None
    margin = round(EDGE_MARGIN_S * sample_rate)
    start = max(0, loud[0] * hop - margin)
    end = min(audio.size, (loud[-1] + 1) * hop + margin)
    return audio[start:end]


def _pauses(audio: np.ndarray, sample_rate: int) -> list[float]:
    """Centres (in seconds) of the silences of at least `MIN_PAUSE_S`, in order."""
    db, hop = _frame_db(audio, sample_rate)
    silent = np.concatenate(([False], db <= -SILENCE_BELOW_DB, [False]))
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]
    min_frames = MIN_PAUSE_S / FRAME_S
    return [(s + e) / 2 * hop / sample_rate for s, e in zip(starts, ends, strict=True) if e - s >= min_frames]


def _split_at_pauses(
    audio: np.ndarray, text: str, limits: ClipLimits, language: str
) -> tuple[list[tuple[np.ndarray, str]], list[tuple[DropReason, float]]]:
    """Cut a long recording between sentences, at the pauses where the speaker ends them.

    A sentence boundary is expected where its share of the transcript's
    characters falls in the recording (read speech keeps a steady pace), and
    is cut at the nearest pause within `SNAP_TOLERANCE`. Boundaries without
    such a pause are not cut. Returns the pieces, and the reason and length
    of each stretch left out (over `limits.max_s` even so, or silent).
    """
    from pipeline.synth.text import split_sentences

    sentences = split_sentences(text, language, max_chars=limits.max_text_chars)
    total_s = audio.size / limits.sample_rate
    pauses = _pauses(audio, limits.sample_rate)
    tolerance = max(SNAP_TOLERANCE_MIN_S, SNAP_TOLERANCE * total_s)
    chars = np.cumsum([len(s) for s in sentences], dtype=np.float64)
    # cuts[i]: the time of the cut after sentence i, or None where no pause is close enough
    cuts: list[float | None] = []
    previous = 0.0
    for boundary in chars[:-1] / chars[-1] * total_s:
        near = [p for p in pauses if p > previous and abs(p - boundary) <= tolerance]
        cut = min(near, key=lambda p: abs(p - boundary)) if near else None
        cuts.append(cut)
        previous = cut if cut is not None else previous
    cuts.append(total_s)

    pieces: list[tuple[np.ndarray, str]] = []
    left_out: list[tuple[DropReason, float]] = []
    start, first = 0.0, 0
    while first < len(sentences):
        # the furthest cut that keeps the piece within the limit, else the nearest one
        candidates = [i for i in range(first, len(sentences)) if cuts[i] is not None]
        fitting = [i for i in candidates if cuts[i] - start <= limits.max_s]  # type: ignore[operator]
        last = fitting[-1] if fitting else candidates[0]
        end = float(cuts[last])  # type: ignore[arg-type]
        piece = audio[round(start * limits.sample_rate): round(end * limits.sample_rate)]
        trimmed = _trim(piece, limits.sample_rate)
        if end - start > limits.max_s:
            left_out.append((DropReason.TOO_LONG, end - start))
        elif trimmed is None:
            left_out.append((DropReason.SILENT, end - start))
        else:
            pieces.append((trimmed, " ".join(sentences[first: last + 1])))
        start, first = end, last + 1
    return pieces, left_out


def _out_of_limits(duration_s: float, text: str, limits: ClipLimits) -> DropReason | None:
    if duration_s < limits.min_s:
        return DropReason.TOO_SHORT
    if duration_s > limits.max_s:
        return DropReason.TOO_LONG
    if len(text) > limits.max_text_chars:
        return DropReason.TEXT_TOO_LONG
    return None
