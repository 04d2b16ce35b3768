"""The Piper engine on the packaged joe voice, and the model checksum that guards it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import EngineError, InputError
from pipeline.synth.base import model_digest
from pipeline.synth import Engine, ModelRef, PiperEngine, create_engine, load_engine, packaged_voice, verify_model

SENTENCES = ["The meeting starts at nine.", "Please bring the signed consent form with you to the front desk."]


@pytest.fixture(scope="module")
def engine(piper_voice: tuple[Path, Path]) -> Iterator[PiperEngine]:
    """One loaded engine for the module: loading takes about half a second."""
    engine = PiperEngine(*piper_voice)
    engine.load()
    yield engine


@pytest.fixture(scope="module")
def voice_ref(piper_voice: tuple[Path, Path]) -> ModelRef:
    onnx, config = piper_voice
    return ModelRef(engine="piper", model_path=onnx, config_path=config, sha256=model_digest(onnx, config))


@pytest.fixture
def tampered_copy(piper_voice: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the model with one byte flipped in the middle of the weights."""
    copy = tmp_path / piper_voice[0].name
    shutil.copyfile(piper_voice[0], copy)
    with copy.open("r+b") as handle:
        handle.seek(copy.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return copy


def test_packaged_voice_is_the_joe_voice(piper_voice: tuple[Path, Path]) -> None:
    assert packaged_voice() == piper_voice


def test_engine_satisfies_the_protocol(engine: PiperEngine) -> None:
    assert isinstance(engine, Engine)
    assert (engine.name, engine.sample_rate, engine.device) == ("piper", 22050, "cpu")


def test_synthesize_gives_one_float32_array_per_sentence(engine: PiperEngine) -> None:
    first, second = engine.synthesize(SENTENCES)
    for audio in (first, second):
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0
        assert np.sqrt(np.mean(np.square(audio))) > 0.01, "silence would let every later check pass on nothing"
    # about 2.5-4 words a second, plus the voice's own lead-in and tail
    assert 0.8 < len(first) / engine.sample_rate < 3.5
    assert 2.0 < len(second) / engine.sample_rate < 7.0


def test_synthesize_keeps_the_model_level(engine: PiperEngine) -> None:
    """Piper's default scales each sentence to full scale; we keep the model's own level
    so sentences match each other and the loudness stage has headroom."""
    (audio,) = engine.synthesize(["A short sentence at the model's own level."])
    assert np.abs(audio).max() < 0.99


def test_sentence_that_espeak_splits_still_gives_one_array(engine: PiperEngine) -> None:
    # espeak-ng ends a sentence at "Mr." and piper yields "Mister" and the rest as two
    # chunks; keeping only the first would give about half a second of audio
    (audio,) = engine.synthesize(["Mr. Smith went to the market to buy bread, milk and a basket of apples."])
    assert len(audio) / engine.sample_rate > 3.0


def test_punctuation_only_sentence_gives_an_empty_array(engine: PiperEngine) -> None:
    (audio,) = engine.synthesize(["..."])
    assert audio.dtype == np.float32 and audio.size == 0


def test_length_scale_slows_the_voice(piper_voice: tuple[Path, Path], engine: PiperEngine) -> None:
    slow = PiperEngine(*piper_voice, length_scale=2.0)
    slow.load()
    sentences = ["We ask the court to hear the case in public."] * 3
    # piper's duration noise moves single lengths by up to a fifth; three each and 2x leave a wide margin
    normal_total = sum(map(len, engine.synthesize(sentences)))
    assert sum(map(len, slow.synthesize(sentences))) > 1.4 * normal_total


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")
def test_device_reports_where_inference_actually_runs(piper_voice: tuple[Path, Path]) -> None:
    # onnxruntime falls back to the CPU when it has no CUDA provider; device must not claim a GPU
    import onnxruntime

    engine = PiperEngine(*piper_voice, device="cuda")
    engine.load()
    assert engine.device == ("cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu")


def test_synthesize_before_load_is_refused(piper_voice: tuple[Path, Path]) -> None:
    engine = PiperEngine(*piper_voice)
    with pytest.raises(EngineError, match=r"not loaded; call load\(\) first"):
        engine.synthesize(["Hello."])
    with pytest.raises(EngineError, match="not loaded"):
        _ = engine.sample_rate


def test_load_reports_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        PiperEngine(tmp_path / "absent.onnx").load()


def test_load_wraps_onnxruntime_errors_for_a_corrupt_model(piper_voice: tuple[Path, Path], tmp_path: Path) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not an onnx model")
    with pytest.raises(EngineError, match="Could not load the Piper voice") as caught:
        PiperEngine(model, piper_voice[1]).load()
    assert caught.value.__cause__ is not None  # the onnxruntime error is kept for debugging


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "tpu"}, "Unknown device 'tpu'"),
        ({"length_scale": 0.0}, "length_scale must be positive"),
        ({"length_scale": -1.0}, "length_scale must be positive"),
    ],
)
def test_invalid_options_are_refused(piper_voice: tuple[Path, Path], options: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        PiperEngine(piper_voice[0], **options)  # type: ignore[arg-type]


def test_verify_model_accepts_the_enrolled_file(voice_ref: ModelRef) -> None:
    verify_model(voice_ref)


def test_verify_model_ignores_hex_case(voice_ref: ModelRef) -> None:
    verify_model(ModelRef(voice_ref.engine, voice_ref.model_path, voice_ref.config_path, voice_ref.sha256.upper()))


def test_verify_model_refuses_a_changed_copy(voice_ref: ModelRef, tampered_copy: Path) -> None:
    ref = ModelRef("piper", tampered_copy, voice_ref.config_path, voice_ref.sha256)
    with pytest.raises(EngineError, match="does not match the sha256 recorded in the voice profile") as caught:
        verify_model(ref)
    assert f"expected {voice_ref.sha256}, found {model_digest(tampered_copy, voice_ref.config_path)}" in str(caught.value)
    assert "re-enroll the voice" in str(caught.value)


def test_the_model_hash_covers_the_piper_config(voice_ref: ModelRef, tmp_path: Path) -> None:
    """Piper reads length_scale and noise_scale from the .onnx.json: changing them is changing the model (issue 10)."""
    import json

    config = json.loads(voice_ref.config_path.read_text())
    config.setdefault("inference", {})["length_scale"] = 1.6
    changed = tmp_path / "changed.onnx.json"
    changed.write_text(json.dumps(config))
    with pytest.raises(EngineError, match="or its config"):
        verify_model(ModelRef("piper", voice_ref.model_path, changed, voice_ref.sha256))


def test_verify_model_reports_a_missing_file(voice_ref: ModelRef, tmp_path: Path) -> None:
    ref = ModelRef("piper", tmp_path / "gone.onnx", None, voice_ref.sha256)
    with pytest.raises(EngineError, match="is missing; restore the original file or re-enroll"):
        verify_model(ref)


def test_create_engine_builds_an_unloaded_piper_engine(voice_ref: ModelRef) -> None:
    engine = create_engine(voice_ref)
    assert isinstance(engine, PiperEngine)
    with pytest.raises(EngineError, match="not loaded"):
        engine.synthesize(["Hello."])


def test_create_engine_refuses_unknown_engines(voice_ref: ModelRef) -> None:
    with pytest.raises(EngineError, match="Unknown engine 'festival'"):
        create_engine(ModelRef("festival", voice_ref.model_path, voice_ref.config_path, voice_ref.sha256))


def test_load_engine_refuses_a_changed_model_before_loading(voice_ref: ModelRef, tampered_copy: Path) -> None:
    with pytest.raises(EngineError, match="does not match"):
        load_engine(ModelRef("piper", tampered_copy, voice_ref.config_path, voice_ref.sha256))


def test_load_engine_returns_a_ready_engine(voice_ref: ModelRef) -> None:
    engine = load_engine(voice_ref)
    assert engine.sample_rate == 22050
