"""Coqui engine: the consenting voice's own fine-tuned model (VITS, XTTS-v2 or another single-speaker Coqui model).

* VITS: the text encoder, duration predictor and flow run on batches of
  sentences of similar length (`Vits.inference` with `x_lengths`). The
  HiFi-GAN decoder, 94-96 % of the time on a CPU, runs on a GPU over the padded
  batch, each output cut to its own length; on a CPU over one sentence at a
  time, in windows of at most `DECODER_FRAMES` (see there why). On a CPU,
  batched output therefore equals one-by-one output to float precision,
  edges included; on a GPU the last ~50 ms differ, where the decoder sees
  the batch's zero padding instead of the sentence's own edge (1-2 % of a
  sentence's energy; see tests/test_coqui_engine.py). With noise on, every
  call is seeded, so the same sentences give the same audio.
  What batching buys on a CPU is small: the decoder already runs at the
  cores' compute roof for one sentence, and the parts that batch are 4-6 %
  of the time. scripts/bench_synth.py on 2 CPU cores, 42 s of audio:
  14.6 s one by one, 13.5 s batched (1.08x). Weight norm is folded into
  the weights at load: inference never trains, and the output is
  bit-identical.
  No ONNX runtime: Coqui's own export on onnxruntime took 13.6 s one by one
  and 15.3 s batched in that run, no faster than the batched torch path,
  and its graph draws noise from an unseeded generator (the bench keeps
  measuring it).
* XTTS-v2: the speaker conditioning (GPT latents and speaker embedding)
  computed from the voice's enrolled recordings lives inside the slim
  checkpoint that `voxgate voice train` writes, so the model's recorded
  sha256 covers whose voice it speaks in. One sentence at a time: its
  autoregressive decoding does not batch.
* Anything else Coqui's `Synthesizer` loads from a checkpoint and config
  (one sentence at a time).

TTS and torch are imported inside `load()`: importing them costs seconds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from pipeline.errors import EngineError, InputError, map_exceptions

logger = logging.getLogger(__name__)

DEVICES: Final = ("cpu", "cuda")
DEFAULT_SEED: Final = 1234
DEFAULT_BATCH_SIZE: Final = {"cpu": 8, "cuda": 32}
"""Most sentences in one VITS batch; a GPU needs more work per launch to be kept busy."""

MIN_BATCH_FILL: Final = {"cpu": 0.75, "cuda": 0.0}
"""On a CPU a padded frame costs as much as a spoken one in the text encoder and the flow, so a batch holds
sentences within a quarter of each other's length; a GPU computes the padding alongside, so its batches are
simply filled."""

DECODER_FRAMES: Final[dict[str, int | None]] = {"cpu": 500, "cuda": None}
"""Most latent frames (~11.6 ms of audio each at 22.05 kHz) in one HiFi-GAN decoder call; None: the whole padded batch.

Measured on 2 AMD EPYC cores (AVX-512) with the standard VITS decoder (14.3 M parameters, ~0.61 GFLOP a
frame): 3.4-3.6 ms a frame for calls of 100-500 frames, i.e. ~175 GFLOP/s, the cores' own matmul roof;
3.8-4.1 ms at 600-1000 frames and 6.1-6.4 ms from 1200 frames on, whether as one long sentence or as a
batch (2 x 600 frames: 6.1 ms), once the activations outgrow the caches. So on a CPU batching the
decoder only loses: decoding the bench's twelve sentences (51 s of audio) as padded batches took
31-33 s against 18 s one by one. Each sentence is decoded by itself, a long one (the text splitter
allows 400 characters, 1300-2000 frames) in windows with the decoder's reach of context on either side
(`_decoder_reach`), which join to the same waveform."""

_LOAD_ERRORS: Final = {
    OSError: EngineError, RuntimeError: EngineError, KeyError: EngineError, ValueError: EngineError,
    TypeError: EngineError, pickle.UnpicklingError: EngineError, AssertionError: EngineError,
}
_SYNTH_ERRORS: Final = {RuntimeError: EngineError, ValueError: EngineError, IndexError: EngineError}


class CoquiEngine:
    """One Coqui model on the GPU when there is one, else the CPU; call `load()` once."""

    name: str = "coqui"

    def __init__(
        self,
        model_path: Path,
        config_path: Path | None = None,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        noise_scale: float | None = None,
        noise_scale_dp: float | None = None,
        length_scale: float | None = None,
        seed: int = DEFAULT_SEED,
    ) -> None:
        """`device` None picks CUDA when available. The noise scales are VITS's and default to its config;
        `length_scale` stretches VITS durations and slows XTTS (speed 1 / length_scale)."""
        if device is not None and device not in DEVICES:
            raise InputError(f"Unknown device {device!r}; use one of: {', '.join(DEVICES)}.")
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}.")
        for label, value in (("noise_scale", noise_scale), ("noise_scale_dp", noise_scale_dp)):
            if value is not None and value < 0:
                raise InputError(f"{label} must be zero or more, got {value}.")
        if length_scale is not None and not length_scale > 0:
            raise InputError(f"length_scale must be positive (1.0 is the voice's own pace), got {length_scale}.")
        self.model_path = model_path
        self.config_path = config_path or model_path.with_name("config.json")
        self.noise_scale, self.noise_scale_dp, self.length_scale = noise_scale, noise_scale_dp, length_scale
        self.seed = seed
        self._requested_device = device
        self._device = device or "cpu"
        self._batch_size = batch_size
        self._backend: _Backend | None = None

    def load(self) -> None:
        """Read the config and weights and move the model to its device."""
        for path in (self.model_path, self.config_path):
            if not path.is_file():
                raise EngineError(f"Coqui model file {path} does not exist; check the voice profile's model paths.")
        import torch
        from TTS.config import load_config

        if self._requested_device == "cuda" and not torch.cuda.is_available():
            logger.warning("CUDA was requested but torch sees no GPU; running on the CPU")
        self._device = "cuda" if self._requested_device != "cpu" and torch.cuda.is_available() else "cpu"
        with map_exceptions(_LOAD_ERRORS, f"Could not load the Coqui model {self.model_path}"):
            config = load_config(str(self.config_path))
            kind = str(config.model).lower()
            if kind == "vits":
                self._backend = _VitsBackend(self, config)
            elif kind == "xtts":
                self._backend = _XttsBackend(self, config)
            else:
                self._backend = _SynthesizerBackend(self)
        logger.info("Loaded Coqui %s model %s (%d Hz) on %s", kind, self.model_path.name,
                    self._backend.sample_rate, self._device)

    @property
    def sample_rate(self) -> int:
        return self._loaded().sample_rate

    @property
    def device(self) -> str:
        return self._device

    @property
    def batch_size(self) -> int:
        return self._batch_size or DEFAULT_BATCH_SIZE[self._device]

    def synthesize(self, sentences: Sequence[str]) -> list[np.ndarray]:
        """One float32 array per sentence; a sentence with nothing to speak gives an empty array."""
        backend = self._loaded()
        with map_exceptions(_SYNTH_ERRORS, "Coqui could not synthesise"):
            arrays = backend.synthesize(list(sentences))
        for number, audio in enumerate(arrays, start=1):
            if not np.all(np.isfinite(audio)):
                raise EngineError(f"Coqui produced invalid samples (NaN or infinity) for sentence {number}.")
        return arrays

    def _loaded(self) -> _Backend:
        if self._backend is None:
            raise EngineError(f"The Coqui model {self.model_path.name} is not loaded; call load() first.")
        return self._backend


class _Backend(Protocol):
    """One kind of Coqui model behind the engine."""

    sample_rate: int

    def synthesize(self, sentences: list[str]) -> list[np.ndarray]: ...


@contextlib.contextmanager
def _seeded(engine: CoquiEngine) -> Iterator[None]:
    """Seed torch's generator for one call and restore it after, so the caller's randomness is untouched."""
    import torch

    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if engine.device == "cuda" else []):
        torch.manual_seed(engine.seed)
        yield


def _speakable(sentence: str) -> bool:
    """False for a sentence of punctuation only, which gives an empty array as in the Piper engine."""
    return any(c.isalnum() for c in sentence)


def _to_array(audio: Any) -> np.ndarray:
    import torch

    if isinstance(audio, torch.Tensor):
        audio = audio.detach().float().cpu().numpy()
    return np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)


class _VitsBackend(_Backend):
    """VITS through `Vits.inference` with `x_lengths`, a batch of sentences at a time, then its decoder."""

    def __init__(self, engine: CoquiEngine, config: Any) -> None:
        import torch
        from TTS.tts.models import setup_model

        config.model_args.init_discriminator = False  # inference never needs it; a full checkpoint's is skipped
        model = setup_model(config)
        state = torch.load(engine.model_path, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v for k, v in state["model"].items() if not k.startswith("disc.")}, strict=True)
        if engine.noise_scale is not None:
            model.inference_noise_scale = engine.noise_scale
        if engine.noise_scale_dp is not None:
            model.inference_noise_scale_dp = engine.noise_scale_dp
        if engine.length_scale is not None:
            model.length_scale = engine.length_scale
        _fold_weight_norm(model)
        self.decoder = model.waveform_decoder.to(engine.device).eval()
        self.reach = _decoder_reach(self.decoder)
        # Vits.inference then returns the decoder's input, the masked latent, as its "model_outputs":
        # Coqui's own code computes the latents and this backend decides how to decode them
        model.waveform_decoder = _latents()
        self.model = model.to(engine.device).eval()
        self.engine = engine
        self.sample_rate = int(config.audio.sample_rate)

    def synthesize(self, sentences: list[str]) -> list[np.ndarray]:
        import torch

        ids = [self._ids(s, number) if _speakable(s) else [] for number, s in enumerate(sentences, start=1)]
        arrays = [np.zeros(0, np.float32) for _ in sentences]
        device = self.engine.device
        with _seeded(self.engine), torch.inference_mode():
            for batch in _batches(ids, self.engine.batch_size, MIN_BATCH_FILL[device]):
                lengths = torch.tensor([len(ids[i]) for i in batch], dtype=torch.long)
                x = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
                for row, i in enumerate(batch):
                    x[row, : len(ids[i])] = torch.tensor(ids[i])
                out = self.model.inference(x.to(device), aux_input={"x_lengths": lengths.to(device)})
                z = out["model_outputs"]
                frames = [min(n, z.shape[-1]) for n in out["y_mask"][:, 0].sum(dim=-1).long().tolist()]
                for i, wav in zip(batch, self._decode(z, frames), strict=True):
                    arrays[i] = _to_array(wav)
        return arrays

    def _ids(self, sentence: str, number: int) -> list[int]:
        """The sentence's token ids; refused when the model has no id for one of its symbols.

        Coqui's tokenizer drops such a symbol with a log line and speaks the rest, so a model trained on
        one script given a letter of another would skip sounds unheard (issue 13: training refuses the
        same gap before any step).
        """
        tokenizer = self.model.tokenizer
        tokenizer.not_found_characters = []  # Coqui's own list of what its encoder dropped
        ids = tokenizer.text_to_ids(sentence)
        if tokenizer.not_found_characters:
            shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in tokenizer.not_found_characters)
            raise EngineError(
                f"The Coqui model {self.engine.model_path.name} cannot speak {shown} in sentence {number} "
                f"({sentence!r}): it has no symbol for them and would skip them. Write the sentence in the "
                "letters the voice was trained on, or train the voice on a base and recordings that have them."
            )
        return ids

    def _decode(self, z: Any, frames: list[int]) -> list[Any]:
        """One waveform per row of the latent batch `z` [B, C, T], each `frames[row]` frames long."""
        window = DECODER_FRAMES[self.engine.device]
        if window is None:
            wav = self.decoder(z)[:, 0]
            per_frame = wav.shape[-1] // z.shape[-1]  # the decoder's upsampling (the hop length)
            return [wav[row, : n * per_frame] for row, n in enumerate(frames)]
        return [_windowed(self.decoder, z[row : row + 1, :, :n], window, self.reach) for row, n in enumerate(frames)]


def _latents() -> Any:
    """A module to stand in for VITS's decoder inside `Vits.inference`: it hands back its input, the masked latent.

    The engine's VITS is single-speaker, so the speaker conditioning `g` is None and the real decoder
    needs nothing else."""
    import torch

    class Latents(torch.nn.Module):
        def forward(self, z: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
            return z

    return Latents()


def _fold_weight_norm(model: Any) -> None:
    """Fold every weight-norm parametrisation into a plain weight: the same output without recomputing
    the norm of each weight at each call (~9 ms of a ~2 s sentence on a CPU)."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight")


def _decoder_reach(decoder: Any) -> int:
    """Latent frames either side of a frame that its waveform depends on, in Coqui's HiFi-GAN generator.

    A convolution sees dilation * (kernel - 1) / 2 of its input samples each side, a transposed one
    kernel / stride (rounded up); of a stage's parallel residual blocks the deepest counts; each figure
    is divided by the samples a frame has at that stage. Rounded up, plus one frame of margin: the
    standard VITS decoder gets 16 frames (nudging one frame moves samples up to 12.6 frames away), the
    tests' tiny one 8 (4.4); tests/test_coqui_engine.py checks the bound.
    """
    import torch

    def sideways(conv: Any) -> float:
        return conv.dilation[0] * (conv.kernel_size[0] - 1) / 2

    reach, rate = sideways(decoder.conv_pre), 1
    kernels = decoder.num_kernels
    for stage, up in enumerate(decoder.ups):
        reach += math.ceil(up.kernel_size[0] / up.stride[0]) / rate
        rate *= up.stride[0]
        blocks = decoder.resblocks[stage * kernels : (stage + 1) * kernels]
        reach += max(sum(sideways(c) for c in b.modules() if isinstance(c, torch.nn.Conv1d)) for b in blocks) / rate
    reach += sideways(decoder.conv_post) / rate
    return math.ceil(reach) + 1


def _windowed(decoder: Any, z: Any, window: int, reach: int) -> Any:
    """One sentence's waveform from its latent `z` [1, C, T], decoded at most `window` frames a call.

    Each window is decoded with `reach` frames of the neighbouring latent on either side and cut back to
    its own frames, so the pieces join to what one call over the whole latent gives (to float rounding);
    the sentence's own edges see the decoder's zero padding as in one call.
    """
    import torch

    frames = z.shape[-1]
    calls = math.ceil(frames / window)
    if calls <= 1:
        return decoder(z)[0, 0]
    size = math.ceil(frames / calls)
    pieces = []
    for start in range(0, frames, size):
        end = min(start + size, frames)
        low, high = max(0, start - reach), min(frames, end + reach)
        wav = decoder(z[:, :, low:high])[0, 0]
        per_frame = wav.shape[-1] // (high - low)
        pieces.append(wav[(start - low) * per_frame : (end - low) * per_frame])
    return torch.cat(pieces)


def _batches(ids: list[list[int]], size: int, min_fill: float) -> Iterator[list[int]]:
    """Indices of the speakable sentences in batches of at most `size`, longest first.

    Longest first puts similar lengths together and shows an out-of-memory
    error on the first batch. A batch also ends where the next sentence is
    shorter than `min_fill` of the batch's longest, so padding stays small.
    """
    order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: len(ids[i]), reverse=True)
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) == size or len(ids[i]) < min_fill * len(ids[batch[0]])):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


class _XttsBackend(_Backend):
    """XTTS-v2 with the speaker conditioning stored in the slim checkpoint."""

    def __init__(self, engine: CoquiEngine, config: Any) -> None:
        import torch
        from TTS.tts.models.xtts import Xtts

        from pipeline.train.checkpoint import VOXGATE_KEY

        # mmap: only the small speaker tensors are read here; load_checkpoint reads the weights
        block = torch.load(engine.model_path, map_location="cpu", weights_only=True, mmap=True).get(VOXGATE_KEY, {})
        speaker = block.get("speaker")
        if speaker is None:
            raise EngineError(
                f"The XTTS model {engine.model_path} carries no speaker conditioning from a voice's enrollment; "
                "build it with `voxgate voice train VOICE --base XTTS_FOLDER` (--steps 0 clones without fine-tuning)."
            )
        model = Xtts(config)
        folder = engine.model_path.parent
        model.load_checkpoint(config, checkpoint_dir=str(folder), checkpoint_path=str(engine.model_path),
                              vocab_path=str(folder / "vocab.json"), eval=True, use_deepspeed=False)
        self.model = model.to(engine.device)
        self.latent = speaker["gpt_cond_latent"].to(engine.device)
        self.embedding = speaker["speaker_embedding"].to(engine.device)
        self.language = str(block.get("language", "en"))
        self.temperature = float(config.temperature)
        self.engine = engine
        self.sample_rate = int(config.audio.output_sample_rate)

    def synthesize(self, sentences: list[str]) -> list[np.ndarray]:
        arrays = []
        speed = 1.0 / self.engine.length_scale if self.engine.length_scale else 1.0
        with _seeded(self.engine):
            for sentence in sentences:
                if not _speakable(sentence):
                    arrays.append(np.zeros(0, np.float32))
                    continue
                out = self.model.inference(sentence, self.language, self.latent, self.embedding,
                                           temperature=self.temperature, speed=speed)
                arrays.append(_to_array(out["wav"]))
        return arrays


class _SynthesizerBackend(_Backend):
    """Any other single-speaker Coqui model, through Coqui's own Synthesizer."""

    def __init__(self, engine: CoquiEngine) -> None:
        from TTS.utils.synthesizer import Synthesizer

        self.synthesizer = Synthesizer(tts_checkpoint=engine.model_path, tts_config_path=engine.config_path,
                                       use_cuda=engine.device == "cuda")
        if getattr(self.synthesizer.tts_model, "num_speakers", 1) > 1:
            raise EngineError(f"{engine.model_path} is a multi-speaker model; voxgate speaks in one consenting voice.")
        self.engine = engine
        self.sample_rate = int(self.synthesizer.output_sample_rate)

    def synthesize(self, sentences: list[str]) -> list[np.ndarray]:
        with _seeded(self.engine):
            return [
                _to_array(self.synthesizer.tts(s, split_sentences=False)) if _speakable(s) else np.zeros(0, np.float32)
                for s in sentences
            ]
