"""Moving averages, local maxima and correlation of 1-D signals, in numpy alone.

`voxgate verify` runs these on every check, and importing `scipy.signal` and
`scipy.ndimage` for them costs about two seconds of a cold start, half the
time a check may take. They mean what their scipy namesakes mean
(`uniform_filter1d`, `find_peaks`, `fftconvolve`), which the tests check
against scipy on random input.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

# scipy.ndimage's boundary modes, and the numpy padding that repeats the signal the same way
_PADDING: dict[str, str] = {"reflect": "symmetric", "nearest": "edge", "constant": "constant"}


def moving_average(x: np.ndarray, size: int, *, axis: int = -1,
                   mode: Literal["reflect", "nearest", "constant"] = "reflect") -> np.ndarray:
    """The mean of `size` neighbours along `axis`: `size // 2` before each sample, the rest after.

    Beyond the ends the signal is mirrored (`reflect`), held (`nearest`) or zero (`constant`).
    """
    if size < 1:
        raise ValueError(f"a moving average needs a size of at least 1, not {size}")
    x = np.asarray(x)
    moved = np.moveaxis(x, axis, -1).astype(np.float64)
    before = size // 2
    widths = [(0, 0)] * (moved.ndim - 1) + [(before, size - 1 - before)]
    padded = np.pad(moved, widths, mode=_PADDING[mode])  # type: ignore[call-overload]
    sums = np.cumsum(padded, axis=-1)
    zero = np.zeros(sums.shape[:-1] + (1,))
    sums = np.concatenate((zero, sums), axis=-1)
    mean = (sums[..., size:] - sums[..., :-size]) / size
    return np.moveaxis(mean, -1, axis).astype(np.result_type(x.dtype, np.float32), copy=False)


def local_maxima(x: np.ndarray, *, distance: int = 1) -> np.ndarray:
    """Indices of the peaks of `x`, left to right: samples above both neighbours.

    A flat top counts once, at its middle (the left one of two); the first and
    last samples are never peaks. With `distance`, a peak closer than that to a
    higher one is dropped, highest first.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size < 3:
        return np.empty(0, dtype=np.intp)
    step = np.diff(x)
    changes = np.flatnonzero(step)  # a plateau is one run of zero steps between two changes
    if changes.size < 2:
        return np.empty(0, dtype=np.intp)
    rising = step[changes[:-1]] > 0
    falling = step[changes[1:]] < 0
    tops = np.flatnonzero(rising & falling)
    left, right = changes[tops] + 1, changes[tops + 1]
    peaks = (left + right) // 2
    if distance > 1 and peaks.size > 1:
        keep = np.ones(peaks.size, dtype=bool)
        for j in np.argsort(x[peaks], kind="stable")[::-1]:
            if not keep[j]:
                continue
            near = np.abs(peaks - peaks[j]) < distance
            near[j] = False
            keep &= ~near
        peaks = peaks[keep]
    return peaks.astype(np.intp)


def correlate_valid(x: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The dot product of `template` with each stretch of `x` it fits in whole, by FFT (len(x) - len(template) + 1)."""
    n, m = len(x), len(template)
    if m > n:
        return np.empty(0)
    size = 1 << (n + m - 2).bit_length()  # the power of two at least n + m - 1: a length the FFT takes quickly
    spectrum = np.fft.rfft(x, size) * np.fft.rfft(np.asarray(template)[::-1], size)
    return np.fft.irfft(spectrum, size)[m - 1:n]

