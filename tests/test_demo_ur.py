"""`voxgate demo --lang ur`: the whole Urdu flow on this machine, offline (issue 13)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app


@pytest.mark.slow  # about 150 s here: espeak-ng render, watermarks, a vertical video
def test_urdu_demo_runs_end_to_end(tmp_path, private_tempdir) -> None:
    from pipeline.export.probe import probe

    home = tmp_path / "demo-ur"
    result = CliRunner().invoke(app, ["demo", "--lang", "ur", "--home", str(home)])
    out = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "Roman Urdu" in out and "Zubair" in out  # refused at submit, as they must be
    assert "بیالیس دن بعد بارہ مارچ دو ہزار پچیس" in out  # what the voice speaks for "42 دن بعد ۱۲ مارچ 2025"
    assert "disclosure by espeak-ng ur+f3" in out  # an announcer that is not the owner's voice (espeak-ng ur)
    assert "--listened" in out and "→ released" in out
    assert "audit log: OK" in out
    verdict = next(line for line in result.output.splitlines() if "verifies forwarded-voice-note.ogg" in line)
    assert "DERIVED" in verdict or "AUTHENTIC" in verdict
    exports = home / "exports"
    import json
    import subprocess

    stream = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "json",
         str(exports / "voxgate-clip-1.vertical.mp4")], capture_output=True, check=True, text=True).stdout)["streams"][0]
    assert stream["height"] > stream["width"]  # vertical
    note = probe(exports / "voxgate-clip-1.ogg")
    assert note.codec == "opus"
    assert "مصنوعی ذہانت" in note.tags.get("label_ur", "") and note.tags.get("label", "").startswith("AI-generated")
    assert (exports / "voxgate-clip-1.ogg").stat().st_size > 10_000
