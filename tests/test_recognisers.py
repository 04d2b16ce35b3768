"""Recognisers per language from voxgate.toml: pinned model folders, WER or CER, and who must listen instead."""

from __future__ import annotations

import pytest

from pipeline.errors import ProvenanceError, StoreError
from pipeline.hashing import sha256_file
from pipeline.quality.asr import default_model_dir
from pipeline.quality.recognisers import (
    BUILTIN,
    check_pinned,
    error_rate,
    recogniser_for,
)
from pipeline.settings import WorkspaceConfig


def _config(**table) -> WorkspaceConfig:
    base = {"path": str(default_model_dir()), "sha256": sha256_file(default_model_dir() / "model.bin"),
            "languages": ["en"], "measure": "cer", "threshold": 0.2}
    return WorkspaceConfig.from_dict({"organisation": {"name": "Org"}, "recognisers": {"tiny": {**base, **table}}})


def test_bundled_recogniser_covers_english_only() -> None:
    assert recogniser_for("en-GB") is BUILTIN
    assert recogniser_for("ur") is None  # so Urdu drafts need a reviewer who listened


def test_a_configured_recogniser_wins_for_its_languages() -> None:
    spec = recogniser_for("en", _config().recognisers)
    assert spec.name == "tiny" and spec.measure == "cer" and not spec.calibrated
    assert "not calibrated" in spec.label


@pytest.mark.parametrize(
    ("table", "match"),
    [({"measure": "bleu"}, "wer or cer"), ({"languages": []}, "empty"), ({"colour": "red"}, "unknown keys")],
)
def test_a_bad_recogniser_table_is_a_config_error(table, match) -> None:
    with pytest.raises(StoreError, match=match):
        _config(**table)


def test_a_model_folder_that_is_not_the_pinned_one_is_refused(tmp_path) -> None:
    check_pinned(_config().recognisers[0])
    with pytest.raises(ProvenanceError, match="not the pinned"):
        check_pinned(_config(sha256="0" * 64).recognisers[0])
    with pytest.raises(ProvenanceError, match="no model.bin"):
        check_pinned(_config(path=str(tmp_path)).recognisers[0])


@pytest.mark.parametrize(
    ("reference", "heard", "rate"),
    [
        ("۴۲ دن بعد، خط لکھا۔", "بیالیس دن بعد خط لکھا", 0.0),  # digits and punctuation do not count
        ("كيا هے", "کیا ہے", 0.0),  # Arabic look-alikes do not count
        ("بیالیس دن", "بیالس دن", 1 / 9),  # one letter of nine
    ],
)
def test_urdu_character_error_rate_normalises_both_sides(reference, heard, rate) -> None:
    assert error_rate("cer", reference, heard, "ur") == pytest.approx(rate)


def test_configured_recogniser_checks_real_speech(speech_clip, speech_clip_text) -> None:
    from pipeline.services.tools import Tools

    spec = _config().recognisers[0]
    heard = Tools().asr(spec).transcribe(*speech_clip, language="en").text
    assert error_rate("cer", speech_clip_text, heard, "en") <= spec.threshold
