"""Training on Urdu: every symbol the base cannot represent is reported before any step (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_coqui import tiny_vits_config

from pipeline.errors import InputError
from pipeline.train.vits import data_symbols, refuse_unrepresentable, training_text

URDU = ["میں نے 42 دن بعد خط لکھا۔", "ہم منصفانہ سماعت چاہتے ہیں۔"]


def test_urdu_training_text_is_the_spoken_form() -> None:
    assert training_text(URDU[0], "ur") == "میں نے بیالیس دن بعد خط لکھا۔"
    assert training_text("Dr. Smith", "en") == "Dr. Smith"  # English is trained as written, as before


def test_an_english_character_base_is_refused_for_urdu_naming_every_missing_letter() -> None:
    config = tiny_vits_config()  # a-z and . , ! ? ' -
    texts = [training_text(x, "ur") for x in URDU]
    with pytest.raises(InputError) as err:
        refuse_unrepresentable(texts, config, "ur", base=Path("base.pth"))
    message = str(err.value)
    needed = {s for s in data_symbols(texts, config, "ur") if s != " "}
    for letter in ("ی", "ہ", "ں", "۔"):  # Urdu letters and the Urdu full stop
        assert repr(letter) in message
    assert f"{len(needed)} character(s)" in message and "Nothing was trained" in message and "\n" not in message


def test_a_base_whose_characters_cover_the_data_is_accepted() -> None:
    config = tiny_vits_config()
    texts = [training_text(x, "ur") for x in URDU]
    config.characters.characters = "".join(sorted({c for t in texts for c in t if c not in "۔ "}))
    config.characters.punctuations = "۔"
    refuse_unrepresentable(texts, config, "ur", base=Path("base.pth"))


def test_a_phoneme_base_is_checked_on_espeak_ng_urdu_phonemes() -> None:
    config = tiny_vits_config()
    config.use_phonemes = True
    config.characters.phonemes = "abc"
    with pytest.raises(InputError, match="phoneme"):
        refuse_unrepresentable([training_text(URDU[1], "ur")], config, "ur", base=Path("base.pth"))
