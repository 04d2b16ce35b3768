"""Announcers for the audible disclosure: recording, then announcer model, then espeak-ng; never the owner's model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ORG, store_snapshot
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.errors import InputError, ProvenanceError
from pipeline.provenance.disclosure import disclosure_text
from pipeline.services import announcers
from pipeline.services.tools import Tools
from pipeline.services.workspace import utcnow
from pipeline.synth import packaged_voice
from pipeline.synth.espeak import EspeakEngine, EspeakVoice

runner = CliRunner()


def _choose(ws, lang: str, voice: str = "demo") -> announcers.Announcer:
    with ws.sessions() as s:
        return announcers.choose(ws, s, lang, voice)


def test_demo_announcer_is_not_the_owners_model(workspace) -> None:
    # The demo voice speaks with the packaged Piper model; its disclosure must not (issue 13).
    chosen = _choose(workspace, "en")
    onnx, _ = packaged_voice()
    from pipeline.hashing import sha256_file

    assert chosen.kind == "espeak" and chosen.robotic
    assert chosen.identity != sha256_file(onnx)
    assert "robotic" in chosen.description


def test_urdu_is_spoken_by_espeak_as_the_last_resort(workspace) -> None:
    chosen = _choose(workspace, "ur")
    assert chosen.identity == "espeak-ng:ur+f3"
    audio, sr = announcers.speak(chosen, disclosure_text("ur", owner="جو", organisation="ادارہ"), Tools())
    assert audio.dtype == np.float32 and len(audio) / sr > 3  # a real, audible sentence


def test_language_without_any_announcer_is_refused_naming_all_three(workspace) -> None:
    with pytest.raises(ProvenanceError) as err:
        _choose(workspace, "zz")
    message = str(err.value)
    assert "voxgate disclosure add --lang zz" in message and "voxgate disclosure model --lang zz" in message
    assert "espeak-ng" in message and "\n" not in message


def test_the_owners_model_cannot_be_an_announcer(workspace) -> None:
    onnx, _ = packaged_voice()
    before = store_snapshot(workspace.home)
    result = runner.invoke(app, ["disclosure", "model", str(onnx), "--lang", "en", "--home", str(workspace.home),
                                 "--as", "ops"])
    assert result.exit_code == 1
    assert "model of a consenting voice" in result.stderr and "\n" not in result.stderr.strip()
    assert store_snapshot(workspace.home) == before


def test_an_espeak_announcer_avoids_the_variant_a_consenting_voice_uses(workspace, tmp_path) -> None:
    from pipeline.services.voices import add_voice

    folder = _espeak_profile(tmp_path, variant="f3")
    add_voice(workspace, folder, actor="ops", now=utcnow())
    assert _choose(workspace, "ur", "demo-ur").identity == "espeak-ng:ur+m3"


def test_recorded_disclosure_is_checked_registered_and_used_verbatim(workspace, enrollment_audio) -> None:
    text = disclosure_text("en", owner="Joe Example", organisation=ORG)
    reading = enrollment_audio.reading(text)
    row = announcers.add_recording(workspace, "en", "demo", reading, Tools(), actor="ops", now=utcnow())
    assert row.checks["words"]["checked"] and row.checks["words"]["wer"] <= announcers.MAX_RECORDING_WER
    chosen = _choose(workspace, "en")
    assert chosen.kind == "recording" and not chosen.robotic
    audio, sr = announcers.speak(chosen, "ignored: a recording is used as recorded", Tools())
    import soundfile as sf

    original, original_sr = sf.read(reading, dtype="float32")
    assert sr == original_sr and np.allclose(audio, original, atol=1e-4)
    # another voice still gets espeak-ng: the recording names this voice's owner
    assert _choose(workspace, "en", "other").kind == "espeak"


@pytest.mark.parametrize("what", ["other words", "silence"])
def test_bad_recorded_disclosure_is_refused(workspace, enrollment_audio, what) -> None:
    if what == "silence":
        path = enrollment_audio.write(np.zeros(22050 * 4, np.float32), 22050, "silence.wav")
        match = "silence"
    else:
        path = enrollment_audio.reading("The weather is fine and the shop opens at nine every morning.")
        match = "word error rate"
    before = store_snapshot(workspace.home)
    with pytest.raises(InputError, match=match):
        announcers.add_recording(workspace, "en", "demo", path, Tools(), actor="ops", now=utcnow())
    assert store_snapshot(workspace.home) == before


def test_espeak_engine_speaks_urdu() -> None:
    engine = EspeakEngine(EspeakVoice("ur"))
    engine.load()
    audio = engine.synthesize(["یہ ایک جملہ ہے۔", "۔"])
    assert len(audio[0]) / engine.sample_rate > 0.5 and len(audio[1]) == 0


def _espeak_profile(tmp_path, *, variant: str | None = None, voice_id: str = "demo-ur"):
    """An espeak-ng Urdu voice profile (the Urdu demo's kind), its dictionary pinned by sha256."""
    from pipeline.cli.demo_ur import write_espeak_profile

    return write_espeak_profile(tmp_path / voice_id, voice_id=voice_id, variant=variant, organisation=ORG,
                                approvers=("joe-delegate",))
