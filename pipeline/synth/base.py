"""The engine interface, and the check that a voice model is the one enrolled.

Engines are the strict point of cut-off between voxgate and a TTS library:
sentences of approved, cleaned text go in, one float32 mono array per sentence
comes out. Everything else (joining, loudness, watermarks, labels, files) is
done by voxgate on those arrays, so every engine gets the same treatment and a
new engine cannot skip a safeguard.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.errors import EngineError, map_exceptions
from pipeline.hashing import sha256_file

logger = logging.getLogger(__name__)


@runtime_checkable
class Engine(Protocol):
    """A speech synthesis engine for one voice model.

    Building an engine is cheap and touches no files; `load()` does the I/O
    (model weights, sessions) once, so the cost is visible at the call site.
    `synthesize` returns one float32 mono array in [-1, 1] per input sentence,
    in order, at `sample_rate`. Engines write no files and apply no loudness
    processing or watermarks: those belong to the pipeline after the engine.
    """

    name: str
    """Registry name of the engine, as stored in a voice profile ("piper", "coqui")."""

    def load(self) -> None:
        """Load the model; raise EngineError if it cannot be loaded."""
        ...

    @property
    def sample_rate(self) -> int:
        """Sample rate of the arrays `synthesize` returns, in Hz."""
        ...

    @property
    def device(self) -> str:
        """Where inference runs: "cpu" or "cuda"."""
        ...

    def synthesize(self, sentences: Sequence[str]) -> list[np.ndarray]:
        """Synthesise each sentence; one float32 mono array in [-1, 1] per sentence."""
        ...


@dataclass(frozen=True)
class ModelRef:
    """A voice model as recorded in a voice profile at enrolment."""

    engine: str
    model_path: Path
    config_path: Path | None
    sha256: str
    """Hex SHA-256 of `model_path`, recorded when the voice was enrolled."""
    config_sha256: str | None = None
    """Hex SHA-256 of `config_path` where the profile pins it (a Piper voice's .onnx.json: both files decide the voice)."""


def verify_model(ref: ModelRef) -> None:
    """Raise EngineError unless `ref.model_path` still has the enrolled SHA-256.

    Consent was given for one specific model; a swapped or corrupted file must
    not be able to speak under that consent.
    """
    path = ref.model_path
    if not path.is_file():
        raise EngineError(f"Model file {path} is missing; restore the original file or re-enroll the voice.")
    with map_exceptions({OSError: EngineError}, f"Could not read model file {path}"):
        found = sha256_file(path)
    expected = ref.sha256.strip().lower()
    if found != expected:
        raise EngineError(
            f"Model file {path} does not match the sha256 recorded in the voice profile "
            f"(expected {expected}, found {found}); restore the original file or re-enroll the voice."
        )
    if ref.config_sha256 is not None:
        config = ref.config_path
        if config is None or not config.is_file():
            raise EngineError(f"Model config {config} is missing; restore the original file or re-enroll the voice.")
        with map_exceptions({OSError: EngineError}, f"Could not read model config {config}"):
            found_config = sha256_file(config)
        if found_config != ref.config_sha256.strip().lower():
            raise EngineError(
                f"Model config {config} does not match the config_sha256 recorded in the voice profile "
                f"(expected {ref.config_sha256}, found {found_config}); restore the original file or re-enroll the voice."
            )
    logger.debug("Model %s matches its recorded sha256 %s", path, found)
