"""Speech synthesis: text preparation, the engine interface and its engines."""

from __future__ import annotations

from pipeline.errors import EngineError
from pipeline.synth.base import Engine, ModelRef, verify_model
from pipeline.synth.coqui import CoquiEngine
from pipeline.synth.espeak import EspeakEngine, EspeakVoice
from pipeline.synth.piper import PiperEngine, packaged_voice
from pipeline.synth.text import (
    clean_text,
    find_forbidden_chars,
    normalise_for_speech,
    refuse_forbidden_chars,
    split_paragraphs,
    split_sentences,
)

__all__ = [
    "CoquiEngine",
    "Engine",
    "EspeakEngine",
    "EspeakVoice",
    "ModelRef",
    "PiperEngine",
    "clean_text",
    "create_engine",
    "find_forbidden_chars",
    "load_engine",
    "normalise_for_speech",
    "packaged_voice",
    "refuse_forbidden_chars",
    "split_paragraphs",
    "split_sentences",
    "verify_model",
]


def create_engine(ref: ModelRef) -> Engine:
    """Build (but do not load) the engine a voice profile names.

    Cheap and free of I/O; most callers want `load_engine`, which also checks
    the model file against its recorded sha256.
    """
    if ref.engine == "piper":
        return PiperEngine(ref.model_path, ref.config_path)
    if ref.engine == "coqui":
        return CoquiEngine(ref.model_path, ref.config_path)
    if ref.engine == "espeak":
        if ref.config_path is None:
            raise EngineError('An espeak voice needs a config file ({"voice": "ur", "variant": null}) in its profile.')
        return EspeakEngine(EspeakVoice.from_file(ref.config_path))
    raise EngineError(f"Unknown engine {ref.engine!r} in the voice profile; voxgate supports: piper, coqui, espeak.")


def load_engine(ref: ModelRef) -> Engine:
    """Verify the model file against the voice profile, then build and load its engine."""
    engine = create_engine(ref)
    verify_model(ref)
    engine.load()
    return engine
