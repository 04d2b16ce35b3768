"""Word error rate between the approved text and what speech recognition heard.

Normalisation is deliberately small, applied the same to both sides, so a
difference in writing is not counted as a difference in speech:

* case-folded;
* apostrophes dropped ("don't" -> "dont"), hyphens and dashes become spaces,
  every other punctuation mark or symbol becomes a space;
* numbers spelt out in English, because Whisper writes "42" for spoken
  "forty-two": digit runs (with thousands commas and a decimal point) become
  cardinals, "1st"/"2nd"/"3rd"/"4th" ordinals (num2words). Years, times,
  currency and units are not special-cased.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from num2words import num2words

from pipeline.errors import InputError

_NUMBER: Final = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(st|nd|rd|th)?")
_APOSTROPHES: Final = "'\u2019\u02bc"


def normalise_words(text: str) -> list[str]:
    """Split `text` into comparable words (see the module docstring)."""
    text = _NUMBER.sub(_spell_number, text.casefold())
    text = "".join(c for c in text if c not in _APOSTROPHES)
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return text.split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words; 0.0 is a perfect match.

    Can exceed 1.0 when the hypothesis has many extra words.
    """
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    if not ref:
        raise InputError("The reference text has no words, so a word error rate is undefined.")
    return _edit_distance(ref, hyp) / len(ref)


def _spell_number(match: re.Match[str]) -> str:
    digits, suffix = match.group(0).replace(",", ""), match.group(1)
    try:
        if suffix:
            return f" {num2words(int(digits[: -len(suffix)]), lang='en', to='ordinal')} "
        return f" {num2words(float(digits) if '.' in digits else int(digits), lang='en')} "
    except OverflowError:  # beyond num2words' range: compare the digits as written
        return f" {match.group(0)} "


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words, one row at a time."""
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]
