"""Audio after the engine: joining sentences, resampling, loudness to a target under a true-peak ceiling."""

from __future__ import annotations

from pipeline.audio.loudness import (
    DEFAULT_TARGET_LUFS,
    DEFAULT_TRUE_PEAK_DBTP,
    LoudnessReport,
    measure,
    normalise,
)
from pipeline.audio.mix import concat, duration_s, join_with_pauses, resample, trim_silence

__all__ = [
    "DEFAULT_TARGET_LUFS",
    "DEFAULT_TRUE_PEAK_DBTP",
    "LoudnessReport",
    "concat",
    "duration_s",
    "join_with_pauses",
    "measure",
    "normalise",
    "resample",
    "trim_silence",
]
