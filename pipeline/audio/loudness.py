"""Loudness measurement (ITU-R BS.1770-4, EBU R 128) and normalisation under a true-peak ceiling.

pyloudnorm measures integrated loudness but has no limiter: gaining a quiet
source up to -16 LUFS pushed its peaks to +4 dBFS. `normalise` therefore
gains to the target and then limits true peaks, measured on the 4x
oversampled signal as in BS.1770-4 Annex 2, with a look-ahead gain curve
that never clips. scipy and pyloudnorm are imported inside the functions:
they cost most of a second at import time.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Final

import numpy as np

from pipeline.audio.filters import moving_average
from pipeline.errors import AudioError, InputError

logger = logging.getLogger(__name__)

DEFAULT_TARGET_LUFS: Final = -16.0
DEFAULT_TRUE_PEAK_DBTP: Final = -1.5

LOUDNESS_TOLERANCE_LU: Final = 0.5
"""`normalise` guarantees the result is this close to the target."""

MIN_DURATION_S: Final = 0.4
"""One BS.1770 gating block; shorter clips have no integrated loudness."""

CLIP_LEVEL: Final = 0.999
"""Samples at or above this magnitude count as clipped."""

TRUE_PEAK_RATE: Final = 192_000
"""True peaks are read on the signal oversampled to at least this rate: 4x at 48 kHz (BS.1770-4
Annex 2), 9x at Piper's 22.05 kHz. A fixed 4x at 22.05 kHz (88.2 kHz) read up to 0.15 dB under
ffmpeg's ebur128 meter, which upsamples to 192 kHz, and more than the limiter's margin: since
Piper's output is random (noise_scale), ffmpeg read a synthesised clip at -1.4 dBTP against a
-1.5 ceiling in about one run in ten (issue 10)."""


def oversampling(sample_rate: int) -> int:
    """The true-peak oversampling factor for `sample_rate`: at least 4, and at least 192 kHz."""
    return max(4, -(-TRUE_PEAK_RATE // sample_rate))

SILENCE_LUFS: Final = -70.0
"""BS.1770's absolute gate: a clip with no block above it is silent."""

_EXACT_TAPS_PER_PHASE: Final = 64
"""Interpolation filter length for the final true-peak check and for `measure`: within 0.01 dB of a
400-tap filter on a 10 kHz burst at 22.05 kHz, where scipy's default (10 taps per phase) read
0.15 dB low and left ffmpeg reading above the ceiling. The limiter's own passes keep scipy's
default filter: shaped by the exact reading, the limiter's gain curve left ffmpeg's meter (which
overshoots near Nyquist) reading 0.3 dB above it, where a final uniform gain reads under."""

_LIMITER_LOOKAHEAD_S: Final = 0.005
"""Gain reduction ramps in over this time before a peak, so there is no hard edge."""

_LIMITER_BLOCK_S: Final = 0.0005
"""Resolution of the limiter's gain curve, which changes over milliseconds."""

_LIMITER_RELEASE_DB_PER_S: Final = 60.0
"""Recovery speed after a peak: a 6 dB reduction releases in 0.1 s, slow enough
not to modulate a voice's pitch periods (a few ms)."""

_LIMITER_MARGIN_DB: Final = 0.2
"""The limiter aims this far under the ceiling: meters interpolate differently, and ffmpeg's
ebur128 (192 kHz) read up to 0.15 dB above an exact reading on a burst near Nyquist."""


_AIM_LU: Final = 0.1
_MAX_PASSES: Final = 6


@dataclass(frozen=True)
class LoudnessReport:
    """Loudness and peak figures for one mono clip."""

    integrated_lufs: float
    """BS.1770-4 gated integrated loudness; -inf for silence."""

    true_peak_dbtp: float
    """Highest magnitude of the signal oversampled to 192 kHz or more, in dB relative to full scale."""

    sample_peak_dbfs: float
    """Highest sample magnitude, in dB relative to full scale."""

    clipped_samples: int
    """Samples with magnitude >= CLIP_LEVEL."""


def measure(samples: np.ndarray, sample_rate: int) -> LoudnessReport:
    """Measure integrated loudness, true peak, sample peak and clipping."""
    import pyloudnorm

    audio = _checked(samples, sample_rate)
    magnitude = np.abs(audio)
    return LoudnessReport(
        integrated_lufs=float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio)),
        true_peak_dbtp=_db(float(_true_peaks(audio, sample_rate, exact=True).max())),
        sample_peak_dbfs=_db(float(magnitude.max())),
        clipped_samples=int(np.count_nonzero(magnitude >= CLIP_LEVEL)),
    )


def normalise(
    samples: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float = DEFAULT_TARGET_LUFS,
    true_peak_dbtp: float = DEFAULT_TRUE_PEAK_DBTP,
) -> np.ndarray:
    """Bring a clip to `target_lufs` with true peaks at or below `true_peak_dbtp` (`normalise_measured`)."""
    return normalise_measured(samples, sample_rate, target_lufs=target_lufs, true_peak_dbtp=true_peak_dbtp)[0]


def normalise_measured(
    samples: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float = DEFAULT_TARGET_LUFS,
    true_peak_dbtp: float = DEFAULT_TRUE_PEAK_DBTP,
) -> tuple[np.ndarray, LoudnessReport]:
    """Bring a clip to `target_lufs` with true peaks at or below `true_peak_dbtp`; the result and its
    `measure` report, from the readings the last pass took (no second measurement).

    Gain, then limit, then measure again: limiting lowers the loudness a
    little, so the gain is corrected and the limiter re-run until the clip is
    within 0.1 LU of the target (two or three passes). Raises AudioError if
    the clip is silent, shorter than 0.4 s, or cannot reach the target within
    `LOUDNESS_TOLERANCE_LU` under the ceiling. Returns float32.
    """
    import pyloudnorm

    if true_peak_dbtp > 0:
        raise InputError(f"The true-peak ceiling must be at most 0 dBTP, got {true_peak_dbtp}.")
    if target_lufs >= true_peak_dbtp:
        raise InputError(
            f"The loudness target ({target_lufs} LUFS) must be below the true-peak ceiling ({true_peak_dbtp} dBTP)."
        )
    source = _checked(samples, sample_rate)
    meter = pyloudnorm.Meter(sample_rate)
    loudness = float(meter.integrated_loudness(source))
    if not loudness > SILENCE_LUFS:
        raise AudioError(
            f"The clip is silent (below {SILENCE_LUFS:.0f} LUFS), so it cannot be normalised; check the engine output."
        )
    limiter_ceiling = 10 ** ((true_peak_dbtp - _LIMITER_MARGIN_DB) / 20)
    source_peaks = _true_peaks(source, sample_rate)  # true peaks scale with gain: oversample once

    # Solve loudness(limit(gain * source)) = target for the gain. A limited
    # sample stays at the ceiling when the gain rises, so loudness grows only
    # with the share of energy the limiter left alone: that share is the
    # first slope estimate, then the secant through the last two passes.
    # Stepping by the plain shortfall would creep up over many passes.
    gain_db = target_lufs - loudness
    previous: tuple[float, float] | None = None
    for number in range(1, _MAX_PASSES + 1):
        audio, unlimited_share = _gain_and_limit(source, source_peaks, gain_db, sample_rate, limiter_ceiling)
        loudness = float(meter.integrated_loudness(audio))
        logger.debug("Pass %d: gain %+.2f dB gives %.2f LUFS", number, gain_db, loudness)
        if abs(loudness - target_lufs) <= _AIM_LU:
            break
        slope = unlimited_share
        if previous is not None and gain_db != previous[0]:
            slope = (loudness - previous[1]) / (gain_db - previous[0])  # secant, once there are two points
        previous = (gain_db, loudness)
        gain_db += (target_lufs - loudness) / min(max(slope, 0.1), 1.0)

    # The limiter works from the peaks before its own gain changes; check the result.
    peaks = _true_peaks(audio, sample_rate)
    if peaks.max() > limiter_ceiling:
        audio = audio * _limiter_gain(peaks, sample_rate, limiter_ceiling)
    true_peak = float(_true_peaks(audio, sample_rate, exact=True).max())
    if true_peak > limiter_ceiling:  # a residual overshoot of a fraction of a dB: lower the whole clip by it
        audio = audio * (limiter_ceiling / true_peak)  # to the margin, not to the edge of the ceiling
        true_peak = limiter_ceiling  # true peaks scale with the gain
    loudness = float(meter.integrated_loudness(audio))
    if abs(loudness - target_lufs) > LOUDNESS_TOLERANCE_LU:
        raise AudioError(
            f"Could not bring the clip to {target_lufs} LUFS under a {true_peak_dbtp} dBTP ceiling "
            f"(reached {loudness:.1f} LUFS); its peaks are too high for its loudness. "
            "Use a lower loudness target or a cleaner source."
        )
    result = audio.astype(np.float32)
    magnitude = np.abs(result)
    return result, LoudnessReport(integrated_lufs=loudness, true_peak_dbtp=_db(true_peak),
                                  sample_peak_dbfs=_db(float(magnitude.max())),
                                  clipped_samples=int(np.count_nonzero(magnitude >= CLIP_LEVEL)))


def _gain_and_limit(
    source: np.ndarray, source_peaks: np.ndarray, gain_db: float, sample_rate: int, ceiling: float
) -> tuple[np.ndarray, float]:
    """Apply `gain_db` and limit; also return the share of energy the limiter left untouched."""
    gain = 10 ** (gain_db / 20)
    audio = source * gain
    peaks = source_peaks * gain
    if peaks.max() <= ceiling:
        return audio, 1.0
    limiter = _limiter_gain(peaks, sample_rate, ceiling)
    audio *= limiter
    energy = np.square(audio)
    return audio, float(energy[limiter >= 0.999].sum() / energy.sum())


def _true_peaks(audio: np.ndarray, sample_rate: int, *, exact: bool = False) -> np.ndarray:
    """Per-sample true peak: the largest oversampled magnitude from each sample to the next.

    Polyphase interpolation by `oversampling(sample_rate)`, as BS.1770-4 Annex 2: phase p is the
    signal convolved with every factor-th tap from p, which reads the signal p/factor of a sample
    after each sample (the same values as `scipy.signal.resample_poly` with this filter). `exact`
    uses the long filter (`_EXACT_TAPS_PER_PHASE`), else scipy's default. The FFT makes the long
    filter as cheap as the short one (0.12 s for 76 s at 48 kHz, against 1.7 s by direct polyphase
    filtering). float32 is ample for a peak reading and halves the time of the convolutions.
    """
    from scipy.signal import oaconvolve

    factor = oversampling(sample_rate)
    taps = _interpolator(factor, exact)
    half = taps.size // 2
    signal = audio.astype(np.float32)
    peaks = np.abs(audio).astype(np.float64)
    for phase in range(factor):
        first = -((phase + half) // factor)  # the phase's earliest tap, in samples relative to the output
        phase_taps = taps[phase + half + first * factor::factor].astype(np.float32)
        values = oaconvolve(signal, phase_taps)[-first:-first + signal.size]
        np.maximum(peaks, np.abs(values), out=peaks)
    return peaks


@functools.cache
def _interpolator(factor: int, exact: bool) -> np.ndarray:
    """The true-peak interpolation filter, scaled for zero-stuffed input. The exact one is long, so
    that content close to Nyquist reads at its level; the other is `scipy.signal.resample_poly`'s
    default design."""
    from scipy.signal import firwin

    taps_per_phase, beta = (_EXACT_TAPS_PER_PHASE, 8.6) if exact else (10, 5.0)
    return factor * firwin(2 * taps_per_phase * factor + 1, 1 / factor, window=("kaiser", beta))


def _limiter_gain(peaks: np.ndarray, sample_rate: int, ceiling: float) -> np.ndarray:
    """Smooth gain curve (<= 1) that keeps every true peak at or below `ceiling`.

    The curve changes over milliseconds, so it is worked out at knots every
    `_LIMITER_BLOCK_S` and drawn as straight lines between them; a knot
    respects the need of every sample in the blocks on both sides, so the
    line between two knots does too. The needed gain is held over the
    look-ahead window by a minimum filter, then averaged over the same
    window: each average is a mean of minima that all include the knot's own
    need, so it never exceeds it, and reduction ramps in linearly instead of
    jumping. Release is held to `_LIMITER_RELEASE_DB_PER_S` by a running
    minimum in dB against a ramp, the vectorised form of
    g[k] = min(target[k], g[k-1] + rate).
    """
    from scipy.ndimage import minimum_filter1d

    need = np.minimum(1.0, ceiling / np.maximum(peaks, np.finfo(np.float64).tiny))
    need[1:] = np.minimum(need[1:], need[:-1])  # a peak between n-1 and n constrains both
    block = max(1, round(_LIMITER_BLOCK_S * sample_rate))
    block_need = np.minimum.reduceat(need, np.arange(0, need.size, block))
    bounded = np.concatenate(([1.0], block_need, [1.0]))
    knot_need = np.minimum(bounded[:-1], bounded[1:])  # knot k sits between blocks k-1 and k

    window = 2 * max(1, round(_LIMITER_LOOKAHEAD_S * sample_rate / block / 2)) + 1
    held = minimum_filter1d(knot_need, window, mode="nearest")
    smooth = np.minimum(moving_average(held, window, mode="nearest"), knot_need)  # rounding error only
    ramp = (_LIMITER_RELEASE_DB_PER_S * block / sample_rate) * np.arange(smooth.size)
    knots = 10 ** ((ramp + np.minimum.accumulate(20 * np.log10(smooth) - ramp)) / 20)

    fraction = np.arange(block) / block
    lines = knots[:-1, np.newaxis] + (knots[1:] - knots[:-1])[:, np.newaxis] * fraction
    return lines.ravel()[: need.size]


def _checked(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Validate a mono clip for BS.1770 measurement; float64 copy."""
    if sample_rate <= 0:
        raise AudioError(f"Sample rate must be positive, got {sample_rate} Hz.")
    audio = np.asarray(samples)
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise AudioError(f"Expected mono float audio (a 1-D float array), got {audio.dtype} with shape {audio.shape}.")
    if not np.all(np.isfinite(audio)):
        raise AudioError("The clip contains NaN or infinite samples.")
    if audio.size < MIN_DURATION_S * sample_rate:
        raise AudioError(
            f"The clip is {audio.size / sample_rate:.2f} s long; loudness needs at least {MIN_DURATION_S} s of audio."
        )
    return audio.astype(np.float64)


def _db(magnitude: float) -> float:
    return 20 * float(np.log10(magnitude)) if magnitude > 0 else float("-inf")
