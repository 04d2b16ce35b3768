"""The engine interface, and the check that a voice model is the one enrolled.

Engines are the strict point of cut-off between voxgate and a TTS library:
sentences of approved, cleaned text go in, one float32 mono array per sentence
comes out. Everything else (joining, loudness, watermarks, labels, files) is
done by voxgate on those arrays, so every engine gets the same treatment and a
new engine cannot skip a safeguard.
"""

from __future__ import annotations

import hashlib

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
    """`model_digest` of the model and its config, recorded when the voice was enrolled."""


def model_digest(model_path: Path, config_path: Path | None) -> str:
    """The model hash consent is bound to: every file the engine reads.

    A model alone hashes as its own sha256; with a config (Piper's `.onnx.json`, whose
    `length_scale` and `noise_scale` change the voice; Coqui's `config.json`) it is the
    sha256 of both files' sha256s, labelled, so neither can change under the consent.
    """
    model = sha256_file(model_path)
    if config_path is None:
        return model
    both = f"voxgate.model/2\nmodel {model}\nconfig {sha256_file(config_path)}\n"
    return hashlib.sha256(both.encode()).hexdigest()


def verify_model(ref: ModelRef) -> None:
    """Raise EngineError unless the model and its config still have the enrolled hash (`model_digest`).

    Consent was given for one specific model; a swapped or corrupted file must
    not be able to speak under that consent.
    """
    path = ref.model_path
    for needed in (path, ref.config_path):
        if needed is not None and not needed.is_file():
            raise EngineError(f"Model file {needed} is missing; restore the original file or re-enroll the voice.")
    with map_exceptions({OSError: EngineError}, f"Could not read model file {path}"):
        found = model_digest(path, ref.config_path)
    expected = ref.sha256.strip().lower()
    if found != expected:
        raise EngineError(
            f"Model file {path}{' or its config ' + str(ref.config_path) if ref.config_path else ''} does not match "
            "the sha256 recorded in the voice profile "
            f"(expected {expected}, found {found}); restore the original file or re-enroll the voice."
        )
    logger.debug("Model %s matches its recorded sha256 %s", path, found)
