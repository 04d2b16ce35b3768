"""The Coqui engine on a tiny real VITS: protocol, batching, determinism, and the model checksum that guards it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures_coqui import TINY_SAMPLE_RATE, tiny_vits

from pipeline.errors import EngineError, InputError
from pipeline.hashing import sha256_file
from pipeline.synth import CoquiEngine, Engine, ModelRef, coqui, create_engine, load_engine

SENTENCES = [
    "The meeting starts at nine.",
    "Please bring the signed consent form with you to the front desk.",
    "Thank you.",
    "We thank everyone who stood with us in the rain, and everyone who wrote.",
    "Hello there, my friend.",
]

DECODER_EDGE_S = 0.05
"""On a GPU, batched and one-by-one output differ only this close to a sentence's end: there the
decoder's convolutions see the batch's zero padding instead of its own edge. On a CPU each sentence
is decoded by itself, so they agree everywhere."""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_vits(tmp_path_factory.getbasetemp() / "tiny-vits")


@pytest.fixture(scope="module")
def engine(tiny_model: tuple[Path, Path]) -> CoquiEngine:
    engine = CoquiEngine(*tiny_model, device="cpu")
    engine.load()
    return engine


@pytest.fixture(scope="module")
def deterministic(tiny_model: tuple[Path, Path]) -> CoquiEngine:
    """Noise off, so batched and one-by-one runs can be compared sample by sample.

    length_scale 3: the untrained model gives each character about one frame;
    this stretches sentences to about speaking length, so the comparison
    covers far more than the decoder's edge.
    """
    engine = CoquiEngine(*tiny_model, device="cpu", noise_scale=0.0, noise_scale_dp=0.0, length_scale=3.0,
                         batch_size=3)  # five sentences make two batches, in an order other than the input's
    engine.load()
    return engine


def test_engine_satisfies_the_protocol(engine: CoquiEngine) -> None:
    assert isinstance(engine, Engine)
    assert (engine.name, engine.sample_rate, engine.device) == ("coqui", TINY_SAMPLE_RATE, "cpu")


def test_synthesize_gives_one_finite_float32_array_per_sentence(engine: CoquiEngine) -> None:
    arrays = engine.synthesize(SENTENCES)
    assert len(arrays) == len(SENTENCES)
    for audio in arrays:
        assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
        assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0
        assert audio.size % 256 == 0, "whole decoder frames (hop 256), trimmed from the padded batch"


def test_batched_synthesis_equals_one_by_one(deterministic: CoquiEngine) -> None:
    batched = deterministic.synthesize(SENTENCES)
    single = [deterministic.synthesize([sentence])[0] for sentence in SENTENCES]
    assert [a.size for a in batched] == [a.size for a in single]
    for b, s in zip(batched, single, strict=True):
        assert s.size > 0.2 * deterministic.sample_rate and np.abs(s).max() > 0.01, "speech-length, not silence"
        np.testing.assert_allclose(b, s, atol=1e-5)  # edges included: on a CPU each sentence is decoded alone


def test_windowed_decoding_equals_one_decoder_call(deterministic: CoquiEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = deterministic.synthesize(SENTENCES)
    window = 12  # frames: every sentence here (30-220 frames) is decoded in 3 to 18 windows
    monkeypatch.setitem(coqui.DECODER_FRAMES, "cpu", window)
    windowed = deterministic.synthesize(SENTENCES)
    hop = 256
    assert min(a.size for a in whole) > 2 * window * hop
    for w, s in zip(windowed, whole, strict=True):
        np.testing.assert_allclose(w, s, atol=1e-5)


def test_decoder_reach_covers_every_frame_a_sample_depends_on(deterministic: CoquiEngine) -> None:
    import torch

    backend = deterministic._backend
    decoder, reach = backend.decoder, backend.reach
    torch.manual_seed(0)
    z = torch.randn(1, decoder.conv_pre.in_channels, 6 * reach)
    frame = 3 * reach
    nudged = z.clone()
    nudged[:, :, frame] += 1.0
    with torch.inference_mode():
        change = (decoder(nudged) - decoder(z))[0, 0].abs().numpy()
    hop = change.size // z.shape[-1]
    reached = np.flatnonzero(change > 0)
    assert reached.size > 0
    assert reached.min() >= (frame - reach) * hop and reached.max() < (frame + 1 + reach) * hop


def test_weight_norm_is_folded_into_the_weights(deterministic: CoquiEngine) -> None:
    from torch.nn.utils import parametrize

    backend = deterministic._backend
    modules = [*backend.model.modules(), *backend.decoder.modules()]
    assert not any(parametrize.is_parametrized(m) for m in modules)


def test_same_call_gives_the_same_audio_with_noise_on(engine: CoquiEngine) -> None:
    first, second = engine.synthesize(SENTENCES[:2]), engine.synthesize(SENTENCES[:2])
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_punctuation_only_sentence_gives_an_empty_array(engine: CoquiEngine) -> None:
    audio, empty = engine.synthesize(["Hello.", "..."])
    assert audio.size > 0 and empty.size == 0 and empty.dtype == np.float32


def test_create_engine_builds_an_unloaded_coqui_engine(tiny_model: tuple[Path, Path]) -> None:
    model, config = tiny_model
    engine = create_engine(ModelRef("coqui", model, config, sha256_file(model)))
    assert isinstance(engine, CoquiEngine)
    with pytest.raises(EngineError, match="not loaded"):
        engine.synthesize(["Hello."])


def test_load_engine_refuses_a_changed_checkpoint(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    model, config = tiny_model
    copy = tmp_path / model.name
    shutil.copyfile(model, copy)
    with copy.open("r+b") as handle:  # flip one byte in the middle of the weights
        handle.seek(copy.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EngineError, match="does not match the sha256 recorded"):
        load_engine(ModelRef("coqui", copy, config, sha256_file(model)))


def test_a_model_without_its_config_is_an_engine_error(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "model.pth"
    shutil.copyfile(tiny_model[0], copy)
    with pytest.raises(EngineError, match="config.json does not exist"):
        CoquiEngine(copy).load()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("device", "tpu"),  # only cpu and cuda exist for torch here
        ("batch_size", 0),
        ("length_scale", 0.0),  # zero would give empty audio, not fast speech
        ("noise_scale", -0.1),
    ],
)
def test_bad_settings_are_refused_before_loading(tiny_model: tuple[Path, Path], option: str, value: object) -> None:
    with pytest.raises(InputError):
        CoquiEngine(tiny_model[0], **{option: value})


@pytest.mark.gpu
def test_engine_uses_the_gpu_when_present_and_batches_there_too(tiny_model: tuple[Path, Path]) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False")
    engine = CoquiEngine(*tiny_model, noise_scale=0.0, noise_scale_dp=0.0, length_scale=3.0)
    engine.load()
    assert engine.device == "cuda" and engine.batch_size == 32
    batched = engine.synthesize(SENTENCES)
    single = [engine.synthesize([sentence])[0] for sentence in SENTENCES]
    assert [a.size for a in batched] == [a.size for a in single]
    edge = int(DECODER_EDGE_S * engine.sample_rate)
    for b, s in zip(batched, single, strict=True):
        assert np.all(np.isfinite(b))
        # cuDNN picks kernels by batch shape and rounds differently (TF32): compare shape, not bits
        assert np.corrcoef(b[:-edge], s[:-edge])[0, 1] > 0.99
