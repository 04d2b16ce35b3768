"""Does a file's audio come from a registered clip? Its waveform, searched for in the clip's master.

The registry keeps every clip's WAV master, so a file that claims to be clip
N (in its tags, or in a manifest we cannot trust) is checked against the
audio of clip N itself. The file is cut into one-second blocks and each
audible block is searched for in the master by normalised cross-correlation.
A re-encode, a resample, a trim or a cut keep the waveform of what is left;
new speech dressed up as clip N, even the same words in the same voice, does
not. Without a claim there is nothing to compare against: finding a clip
from the audio alone is the payload watermark's job.

Measured on the packaged Piper voice (7 s of speech, at 16 kHz), the best
correlation of each block:

    =============================================  ==========
    file, against clip N's master                   per block
    =============================================  ==========
    MP3 64k, AAC 48k, the first second cut off      0.99–1.00
    Ogg Opus 32k and 16k (voip)                     0.93–0.96
    one second cut from the middle, then MP3 64k    0.93–1.00
    gain change and 300 Hz high-pass                0.67–0.85
    the same text synthesised again (12 runs)       0.14–0.61
    the same text 5 % slower; other text            ≤ 0.37
    =============================================  ==========

Heavy filtering and time-stretching (0.42–0.80 at 5 %) defeat it: that is
left to the payload mark. A waveform search across the whole master for every block would cost
minutes on long clips, so each block is first looked for where the previous
one ended (a plain re-encode never needs more), and otherwise only at the few
places where its loudness contour (10 ms frames) fits the master's best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

RATE: Final = 16_000  # both signals, mono; speech keeps its waveform here and the search is 9x cheaper than at 48 kHz
BLOCK: Final = RATE  # one second
#: A block matches at or above this: measured re-encodes ≥ 0.93, the same words synthesised again ≤ 0.61.
MATCH_SCORE: Final = 0.8
#: Fewer matched seconds than this prove nothing.
MIN_MATCHED_S: Final = 2.0
#: A single block of new speech in the same voice can pass `MATCH_SCORE` by chance (seen once in a 6 s
#: re-synthesis); a file is found only when most of its audible audio is, which chance does not do.
MIN_COVERAGE: Final = 0.5
NEAR: Final = RATE // 50  # look 20 ms either side of where the previous block ended (codec delay, drift)
SILENCE_RMS: Final = 1e-3  # -60 dBFS: a block this quiet carries no waveform to compare
HOP: Final = RATE // 100  # loudness contour frames: 10 ms
CANDIDATES: Final = 5  # places tried for a block that is not where the previous one ended


@dataclass(frozen=True)
class ContentMatch:
    """How much of a file's audible audio was found in one clip's master."""

    audible_s: float
    matched_s: float

    @property
    def coverage(self) -> float:
        return self.matched_s / self.audible_s if self.audible_s else 0.0

    @property
    def found(self) -> bool:
        return self.matched_s >= MIN_MATCHED_S and self.coverage >= MIN_COVERAGE


def match_audio(suspect: np.ndarray, master: np.ndarray) -> ContentMatch:
    """Search each audible second of `suspect` in `master` (both mono float at `RATE`)."""
    m = np.asarray(master, dtype=np.float64)
    energy = np.concatenate(([0.0], np.cumsum(m * m)))
    contour = _contour(m)
    audible = matched = 0
    expected: int | None = None
    for start in range(0, len(suspect) - BLOCK + 1, BLOCK):
        block = np.asarray(suspect[start:start + BLOCK], dtype=np.float64)
        if np.sqrt(np.mean(block * block)) < SILENCE_RMS:
            continue
        audible += 1
        where = None
        if expected is not None:
            where = _find(block, m, energy, max(0, expected - NEAR), min(len(m), expected + BLOCK + NEAR))
        for place in () if where is not None else _candidates(_contour(block), contour):
            if (where := _find(block, m, energy, max(0, place - NEAR), min(len(m), place + BLOCK + NEAR))) is not None:
                break
        if where is not None:
            matched += 1
        expected = None if where is None else where + BLOCK
    return ContentMatch(audible * BLOCK / RATE, matched * BLOCK / RATE)


def _find(block: np.ndarray, master: np.ndarray, energy: np.ndarray, lo: int, hi: int) -> int | None:
    """Where in master[lo:hi] the block correlates best, if that is a match."""
    from scipy.signal import fftconvolve  # 0.7 s to import: kept off the CLI's start-up path

    if hi - lo < BLOCK:
        return None
    products = fftconvolve(master[lo:hi], block[::-1], mode="valid")
    window = energy[lo + BLOCK:hi + 1] - energy[lo:hi - BLOCK + 1]
    # Silent stretches of the master cannot match, and would divide rounding noise by almost nothing.
    audible = window >= SILENCE_RMS**2 * BLOCK
    score = np.zeros_like(products)
    score[audible] = np.abs(products[audible]) / np.sqrt(window[audible] * (block @ block))
    best = int(np.argmax(score))
    return lo + best if score[best] >= MATCH_SCORE else None


def _contour(x: np.ndarray) -> np.ndarray:
    """RMS of each 10 ms frame."""
    frames = len(x) // HOP
    return np.sqrt(np.mean(np.square(x[:frames * HOP]).reshape(frames, HOP), axis=1))


def _candidates(block: np.ndarray, contour: np.ndarray) -> np.ndarray:
    """Sample offsets in the master where the block's loudness contour correlates best, best first."""
    from scipy.signal import fftconvolve, find_peaks

    n = len(block)
    if len(contour) < n:
        return np.empty(0, dtype=int)
    centred = block - block.mean()
    sums = np.concatenate(([0.0], np.cumsum(contour)))
    squares = np.concatenate(([0.0], np.cumsum(contour * contour)))
    window_sum = sums[n:] - sums[:-n]
    spread = np.maximum(squares[n:] - squares[:-n] - window_sum**2 / n, 1e-12)
    score = fftconvolve(contour, centred[::-1], mode="valid") / np.sqrt(spread * (centred @ centred) + 1e-12)
    # Pad so that a best fit at either end of the master still counts as a peak.
    peaks, _ = find_peaks(np.pad(score, 1, constant_values=-np.inf), distance=n // 4)
    peaks -= 1
    return peaks[np.argsort(score[peaks])[::-1][:CANDIDATES]] * HOP
