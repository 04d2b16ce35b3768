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

Correlation alone cannot tell a re-encode from a clip with other speech
mixed over it (a -12 dB overlay still correlates 0.94–0.99). So each found
second is also judged by its residual: the master, aligned and gain-matched,
is subtracted, and what is left above the master's own level frame by frame
(`foreign_share`) marks the second as *mixed* (figures at `MIXED_SHARE`).
Each second's state is kept (`ContentMatch.blocks`), with where in the master
it was found, so a verdict can say which seconds are genuine, whether they
come in the clip's order and how much of the clip the file covers.

Heavy filtering and time-stretching (0.42–0.80 at 5 %) defeat it: that is
left to the payload mark. A waveform search across the whole master for every block would cost
minutes on long clips, so each block is first looked for where the previous
one ended (a plain re-encode never needs more), and otherwise only at the few
places where its loudness contour (10 ms frames) fits the master's best.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

import numpy as np

from pipeline.audio.filters import correlate_valid, local_maxima

RATE: Final = 16_000  # both signals, mono; speech keeps its waveform here and the search is 9x cheaper than at 48 kHz
BLOCK: Final = RATE  # one second
TAIL_MIN: Final = RATE // 10  # a file's last part shorter than a second but longer than this gets a block of its own
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
FRAME: Final = RATE // 50  # 20 ms frames for the residual after subtracting the master
#: A found second whose residual above the master (`foreign_share`) reaches this is a mix. Measured on
#: a 9 s marked Piper clip, per second: re-encodes (MP3 32k/64k, AAC 48k, Opus 8k-voip/12k/16k/24k)
#: 0.000-0.015 (0.021 at worst on a 43 s release in Opus 12k); espeak-ng speech over it at -12 dB
#: 0.053-0.19 (correlation still 0.94-0.99),
#: at -18 dB 0.012-0.042, at -24 dB 0.002-0.008 (a murmur under the clip: left as a re-encode).
MIXED_SHARE: Final = 0.03
#: ... and over the whole file: the found seconds' foreign shares weighted by their energy. At or above
#: this the file is a mix, and each of its seconds at or above it is marked mixed. Measured on a 43 s
#: release (scripts/bench_verify.py): Opus 12k 0.0033 (its worst second 0.021), Opus 24k and MP3 64k
#: 0.0000; espeak-ng speech 12 dB under the clip's loudness, then MP3 128k, 0.020 (median second 0.014,
#: only 12 of 42 seconds above `MIXED_SHARE`); 18 dB under 0.004, 24 dB under 0.0008 (left as re-encodes).
MIXED_FILE_SHARE: Final = 0.01


class Block(str, Enum):
    """What one second of a file is, against one clip's master."""

    GENUINE = "genuine"  # found in the master, and nothing else is in it
    MIXED = "mixed"  # found in the master, with other audio mixed over it
    ABSENT = "absent"  # audible, and not found in the master
    SILENT = "silent"  # too quiet to compare


@dataclass(frozen=True)
class ContentMatch:
    """How much of a file's audible audio was found in one clip's master, second by second."""

    audible_s: float
    matched_s: float  # found in the master, whether clean or with other audio over it
    mixed_s: float = 0.0  # of those, how many carry other audio mixed over the clip
    blocks: tuple[Block, ...] = ()  # each second of the file, in order
    at: tuple[float | None, ...] = ()  # where in the master each found second starts (s)
    master_audible_s: float = 0.0  # the master's own audible seconds, for how much of the clip the file covers

    @property
    def coverage(self) -> float:
        return self.matched_s / self.audible_s if self.audible_s else 0.0

    @property
    def found(self) -> bool:
        return self.matched_s >= MIN_MATCHED_S and self.coverage >= MIN_COVERAGE

    @property
    def in_order(self) -> bool:
        """Whether the found seconds come in the master's order (a cut is fine; a re-arrangement is not)."""
        places = [t for t in self.at if t is not None]
        return all(b > a for a, b in zip(places, places[1:]))

    @property
    def clip_covered(self) -> float:
        """The share of the master's audible seconds that the file's genuine seconds come from."""
        seconds = {round(t) for t, b in zip(self.at, self.blocks) if t is not None and b is Block.GENUINE}
        return min(1.0, len(seconds) / self.master_audible_s) if self.master_audible_s else 0.0


def block_starts(samples: int) -> list[int]:
    """Where each judged second of a file of `samples` starts: every whole second, then the file's last second.

    The last block ends where the file ends (it overlaps the one before): a tail shorter than a second is
    judged too, so nothing can be appended to a clip in the part of the file no block looks at.
    """
    starts = list(range(0, samples - BLOCK + 1, BLOCK))
    if starts and samples - (starts[-1] + BLOCK) >= TAIL_MIN:
        starts.append(samples - BLOCK)
    return starts


def match_audio(suspect: np.ndarray, master: np.ndarray) -> ContentMatch:
    """Search each audible second of `suspect` in `master` (both mono float at `RATE`)."""
    m = np.asarray(master, dtype=np.float64)
    energy = np.concatenate(([0.0], np.cumsum(m * m)))
    contour = _contour(m)
    blocks: list[Block] = []
    at: list[float | None] = []
    foreign: dict[int, float] = {}
    foreign_energy = found_energy = 0.0
    expected: int | None = None
    starts = block_starts(len(suspect))
    for start, following in zip(starts, [*starts[1:], None]):
        block = np.asarray(suspect[start:start + BLOCK], dtype=np.float64)
        if np.sqrt(np.mean(block * block)) < SILENCE_RMS:
            blocks.append(Block.SILENT)
            at.append(None)
            continue
        where = None
        if expected is not None:
            where = _find(block, m, energy, max(0, expected - NEAR), min(len(m), expected + BLOCK + NEAR))
        for place in () if where is not None else _candidates(_contour(block), contour):
            if (where := _find(block, m, energy, max(0, place - NEAR), min(len(m), place + BLOCK + NEAR))) is not None:
                break
        if where is None:
            blocks.append(Block.ABSENT)
        elif start % BLOCK:  # the file's overlapping last second: found or not; a codec's tail is no overlay
            blocks.append(Block.GENUINE)
        else:
            share = foreign_share(block, m[where:where + BLOCK])
            blocks.append(Block.GENUINE)
            foreign[len(blocks) - 1] = share
            foreign_energy += share * float(block @ block)
            found_energy += float(block @ block)
        at.append(None if where is None else where / RATE)
        expected = None if where is None or following is None else where + following - start
    # Speech mixed thinly over a whole clip shows in the sum before it shows in any one second.
    overlaid = found_energy > 0 and foreign_energy / found_energy >= MIXED_FILE_SHARE
    for i, share in foreign.items():
        if share >= MIXED_SHARE or (overlaid and share >= MIXED_FILE_SHARE):
            blocks[i] = Block.MIXED
    audible = sum(b is not Block.SILENT for b in blocks)
    matched = sum(b in (Block.GENUINE, Block.MIXED) for b in blocks)
    mixed = sum(b is Block.MIXED for b in blocks)
    master_blocks = len(m) // BLOCK
    loud = (energy[BLOCK:master_blocks * BLOCK + 1:BLOCK] - energy[:master_blocks * BLOCK:BLOCK]) / BLOCK
    return ContentMatch(audible * BLOCK / RATE, matched * BLOCK / RATE, mixed * BLOCK / RATE, tuple(blocks),
                        tuple(at), float(np.sum(loud >= SILENCE_RMS**2)) * BLOCK / RATE)


def foreign_share(block: np.ndarray, master: np.ndarray) -> float:
    """The share of the block's energy that is not the master's: other audio louder than the clip where it is quiet.

    The master, gain-matched, is subtracted; a codec's error stays under the clip frame by frame (it is
    masked by it), while speech mixed over the clip fills its pauses and quiet phonemes. So only the
    residual above the master's own level in each 20 ms frame counts.
    """
    gain = float(block @ master) / max(float(master @ master), 1e-12)
    residual = block - gain * master
    frames = len(block) // FRAME

    def power(x: np.ndarray) -> np.ndarray:
        return np.mean(np.square(x[:frames * FRAME]).reshape(frames, FRAME), axis=1)

    excess = np.maximum(power(residual) - power(gain * master), 0.0)
    return float(np.sum(excess) / max(np.sum(power(block)), 1e-12))


def _find(block: np.ndarray, master: np.ndarray, energy: np.ndarray, lo: int, hi: int) -> int | None:
    """Where in master[lo:hi] the block correlates best, if that is a match."""
    if hi - lo < BLOCK:
        return None
    products = correlate_valid(master[lo:hi], block)
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
    n = len(block)
    if len(contour) < n:
        return np.empty(0, dtype=int)
    centred = block - block.mean()
    sums = np.concatenate(([0.0], np.cumsum(contour)))
    squares = np.concatenate(([0.0], np.cumsum(contour * contour)))
    window_sum = sums[n:] - sums[:-n]
    spread = np.maximum(squares[n:] - squares[:-n] - window_sum**2 / n, 1e-12)
    score = correlate_valid(contour, centred) / np.sqrt(spread * (centred @ centred) + 1e-12)
    # Pad so that a best fit at either end of the master still counts as a peak.
    peaks = local_maxima(np.pad(score, 1, constant_values=-np.inf), distance=n // 4) - 1
    return peaks[np.argsort(score[peaks])[::-1][:CANDIDATES]] * HOP
