"""The numpy filters mean what their scipy namesakes mean, on random input and at the edges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d
from scipy.signal import fftconvolve, find_peaks

from pipeline.audio.filters import correlate_valid, local_maxima, moving_average

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("mode", ["reflect", "nearest", "constant"])
@pytest.mark.parametrize("size", [1, 2, 8, 9, 64])
def test_moving_average_is_scipys_uniform_filter(mode: str, size: int) -> None:
    x = RNG.standard_normal((5, 300))
    for axis in (0, 1):
        ours = moving_average(x, size, axis=axis, mode=mode)  # type: ignore[arg-type]
        assert ours.shape == x.shape and ours.dtype == x.dtype
        np.testing.assert_allclose(ours, uniform_filter1d(x, size, axis=axis, mode=mode), atol=1e-12)
    x32 = RNG.standard_normal(1000).astype(np.float32)
    ours32 = moving_average(x32, size, mode=mode)  # type: ignore[arg-type]
    assert ours32.dtype == np.float32
    np.testing.assert_allclose(ours32, uniform_filter1d(x32, size, mode=mode), atol=1e-5)


def test_moving_average_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        moving_average(np.ones(4), 0)


@pytest.mark.parametrize("distance", [1, 2, 5, 40])
def test_local_maxima_are_scipys_peaks(distance: int) -> None:
    for trial in range(20):
        x = RNG.standard_normal(500).cumsum() if trial % 2 else RNG.standard_normal(500)
        if distance == 1:  # rounded, so that flat tops (plateaus) of every width occur; with a distance,
            x = np.round(x, 1)  # peaks of equal height could be dropped in either order
        expected, _ = find_peaks(x, distance=distance)
        np.testing.assert_array_equal(local_maxima(x, distance=distance), expected)


def test_local_maxima_edges() -> None:
    assert local_maxima(np.array([3.0, 1.0, 2.0])).size == 0  # the ends are never peaks
    assert local_maxima(np.array([1.0, 2.0, 2.0, 2.0, 2.0, 1.0])).tolist() == [2]  # a flat top, at its middle
    assert local_maxima(np.array([1.0, 2.0, 2.0])).size == 0  # a flat top that runs to the end is no peak
    assert local_maxima(np.ones(10)).size == 0
    assert local_maxima(np.pad(np.array([5.0, 1.0, 4.0]), 1, constant_values=-np.inf)).tolist() == [1, 3]


@pytest.mark.parametrize(("n", "m"), [(1000, 1), (1000, 37), (4801, 4800), (9973, 500)])
def test_correlate_valid_is_scipys_valid_convolution_with_the_reversed_template(n: int, m: int) -> None:
    x, template = RNG.standard_normal(n), RNG.standard_normal(m)
    ours = correlate_valid(x, template)
    assert len(ours) == n - m + 1
    np.testing.assert_allclose(ours, fftconvolve(x, template[::-1], mode="valid"), atol=1e-9)
    assert correlate_valid(template, x).size == 0 or m == n
