"""Text preparation for synthesis: cleaning, refusing hidden characters, sentence splitting.

Pure functions, no I/O. What reviewers approved is what gets spoken, so
nothing here silently drops a character: invisible and control characters are
reported by `find_forbidden_chars` and refused, never stripped. Run
`clean_text` first (it turns Windows line endings into plain newlines), then
check, then split.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pipeline.errors import InputError
from pipeline.synth.urdu import canonical_urdu, refuse_unspeakable_latin, speakable_urdu

DEFAULT_MAX_SENTENCE_CHARS: Final = 400
"""Longer sentences are split at clauses: VITS attention degrades on very long inputs."""

# Zs (space separators) plus tab. Spelled out rather than `\s`, which also
# matches control characters (U+001C-U+001F, U+0085) that must be refused.
_HORIZONTAL_SPACE: Final = re.compile("[\t \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_LINE_BREAK: Final = re.compile("\r\n?|\u2028")
_SPACE_AROUND_NEWLINE: Final = re.compile(" *\n *")
_BLANK_LINES: Final = re.compile("\n{3,}")
_SPACE_RUN: Final = re.compile(" {2,}")

_FORBIDDEN: Final = re.compile(
    "["
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 except tab and newline, DEL, C1
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u200b-\u200d\u2060\ufeff"  # zero-width space, (non-)joiner, word joiner, BOM
    "\U000e0000-\U000e007f"  # tag characters: can spell out a whole hidden ASCII string
    "\ud800-\udfff"  # lone surrogates: cannot even be stored as UTF-8
    "]"
)
_ZWNJ: Final = "\u200c"

# Terminators end a sentence when followed by whitespace or the end of text;
# the unspaced ones never occur inside numbers or abbreviations, so they end a
# sentence even when the writer left no space after them.
_SPACED_TERMINATORS: Final = ".!?…"
_UNSPACED_TERMINATORS: Final = "۔؟。！？।॥"  # Urdu/Arabic, CJK, Devanagari
_CLOSERS: Final = "\"'”’»)]}›」』"
_OPENERS: Final = "\"'“‘«([{‹「『¿¡"
_TERMINATOR_RUN: Final = re.compile(
    f"[{re.escape(_SPACED_TERMINATORS + _UNSPACED_TERMINATORS)}]+[{re.escape(_CLOSERS)}]*"
)
# Where an over-long sentence is split first: ASCII marks only before a space
# (so "1,000" and "10:30" stay whole), the others anywhere.
_CLAUSE_MARK: Final = re.compile("[,;:](?=\\s)|[—،؛、，；：]")


@dataclass(frozen=True)
class _SentenceRules:
    """Language-specific knowledge about full stops that do not end a sentence."""

    never_final: frozenset[str] = frozenset()
    """Lowercased words whose "." never ends a sentence ("mr", "e.g")."""

    before_number: frozenset[str] = frozenset()
    """Lowercased words whose "." does not end a sentence when a number follows ("no. 5")."""


_GENERIC_RULES: Final = _SentenceRules()
_ENGLISH_RULES: Final = _SentenceRules(
    # Only words that cannot end a sentence; "etc." and "Jr." often do, and
    # "St." may be Street, so they are left to the capital-letter rule.
    never_final=frozenset(
        "mr mrs ms mx dr prof rev hon gen col capt lt sgt e.g i.e cf vs viz approx".split()
    ),
    before_number=frozenset("no nos vol fig p pp ch sec art op".split()),
)
# Urdu needs nothing beyond the generic rules: ۔ and ؟ are generic
# terminators, and a script without letter case makes no abbreviation guesses.
_RULES_BY_LANGUAGE: Final = {"en": _ENGLISH_RULES}

_ENGLISH_SPEECH_REWRITES: Final = (
    # espeak-ng ends a sentence at "Mr." / "Dr." + capital (measured with
    # piper 1.8), which breaks the intonation mid-sentence.
    (re.compile(r"\bMr\.(?=\s+[A-Z])"), "Mister"),
    (re.compile(r"\bMrs\.(?=\s+[A-Z])"), "Missus"),
    (re.compile(r"\bMs\.?(?=\s+[A-Z])"), "Mizz"),  # "Ms" alone is read "M S"
    (re.compile(r"\bDr\.(?=\s+[A-Z])"), "Doctor"),
    (re.compile(r"\bProf\.(?=\s+[A-Z])"), "Professor"),
    (re.compile(r"\b([A-Z])\.(?=\s+[A-Z])"), r"\1"),  # initials: "J. K. Rowling"
    (re.compile(r"\bNo\.(?=\s*\d)"), "number"),  # otherwise read "no. five"
    (re.compile(r"\bi\.e\.", re.IGNORECASE), "that is"),  # otherwise spelled "I E"
    (re.compile(r"\be\.g\.", re.IGNORECASE), "for example"),
    (re.compile(r"\bvs\.?(?=\s)", re.IGNORECASE), "versus"),  # otherwise "vee ess"
    (re.compile(r"&"), " and "),  # espeak-ng drops "&" silently
    (re.compile(r"%"), " percent"),  # character-based engines have no symbol for it
)


def clean_text(text: str) -> str:
    """NFC-normalise and tidy whitespace, keeping paragraph structure.

    Line endings become "\\n", runs of spaces and tabs one space, and blank
    lines exactly one paragraph break ("\\n\\n"). Quotes, dashes and every
    other visible character are kept as written; control and invisible
    characters are left in place for `find_forbidden_chars` to report.
    """
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAK.sub("\n", text).replace("\u2029", "\n\n")
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip(" \n")


def find_forbidden_chars(text: str) -> list[tuple[int, str]]:
    """Positions (0-based) and names of characters that text for synthesis may not contain.

    Control, bidirectional-override and zero-width characters change what a
    reviewer sees without changing what is spoken, or the reverse, so they
    are refused rather than removed. ZERO WIDTH NON-JOINER is refused in
    every language for now, although Urdu and Persian spelling uses it to
    keep letters apart without a space: it can hide content too, and the
    words are spoken the same without it. A per-language allowance can come
    with a reviewer view that shows it.
    """
    return [(match.start(), _describe(match.group())) for match in _FORBIDDEN.finditer(text)]


def refuse_forbidden_chars(text: str) -> None:
    """Raise InputError listing any forbidden characters in `text`."""
    found = find_forbidden_chars(text)
    if not found:
        return
    shown = ", ".join(f"{name} at character {position + 1}" for position, name in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    zwnj = (
        " (ZERO WIDTH NON-JOINER too, although Urdu and Persian spelling uses it:"
        " the words are spoken the same without it)"
        if _ZWNJ in text
        else ""
    )
    raise InputError(
        f"The text contains {len(found)} invisible or control character(s): {shown}{more}. "
        f"They can hide or reorder what reviewers read, so they are refused{zwnj}. "
        "Remove them and submit the text again."
    )


def split_paragraphs(text: str) -> list[str]:
    """Cleaned paragraphs (split at blank lines), each on one line.

    Single newlines inside a paragraph become spaces: pasted text is often
    hard-wrapped in mid-sentence.
    """
    paragraphs = (paragraph.replace("\n", " ") for paragraph in clean_text(text).split("\n\n"))
    return [paragraph for paragraph in paragraphs if paragraph]


def split_sentences(text: str, lang: str, *, max_chars: int = DEFAULT_MAX_SENTENCE_CHARS) -> list[str]:
    """Split text into sentences for an engine, none longer than `max_chars`.

    `lang` is a BCP 47 tag ("en", "en-US", "ur"); languages without special
    rules get the generic ones, which know the full stops of Latin, Arabic,
    CJK and Devanagari scripts. Paragraph breaks always end a sentence.
    Nothing is dropped, added or reordered: without whitespace, the joined
    result equals the NFC input, except that a paragraph with nothing
    speakable in it (" ... ") gives no sentence.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    rules = _RULES_BY_LANGUAGE.get(_primary_language(lang), _GENERIC_RULES)
    sentences: list[str] = []
    for paragraph in split_paragraphs(text):
        for sentence in _split_paragraph(paragraph, rules):
            sentences.extend(_split_long(sentence, max_chars))
    return sentences


def normalise_for_speech(sentence: str, lang: str, *, names: Mapping[str, str] | None = None) -> str:
    """Rewrite what a voice would misread into words it can speak.

    Applied to each sentence just before synthesis, never to the approved
    text. English: the few symbols and abbreviations TTS front ends misread;
    numbers, currency and dates are left to the engine (espeak-ng reads them
    well). Urdu: numbers, dates, times, currency, acronyms and known Latin
    names become Urdu words (`pipeline.synth.urdu`; `names` extends its table),
    since a voice trained on Urdu letters has never seen a digit. Other
    languages are returned unchanged, since expanding "&" or "%" needs words
    of that language.
    """
    primary = _primary_language(lang)
    if primary == "ur":
        return speakable_urdu(sentence, names)
    if primary != "en":
        return sentence
    for pattern, replacement in _ENGLISH_SPEECH_REWRITES:
        sentence = pattern.sub(replacement, sentence)
    return _SPACE_RUN.sub(" ", sentence).strip(" ")


def canonical_text(text: str, lang: str) -> str:
    """The form of a statement that is hashed, approved, spoken and compared.

    Cleaned (`clean_text`); for Urdu also the Urdu letters for Arabic
    look-alikes and Urdu digits (`pipeline.synth.urdu.canonical_urdu`), so
    two texts a reader cannot tell apart hash the same.
    """
    text = clean_text(text)
    return canonical_urdu(text) if _primary_language(lang) == "ur" else text


def refuse_unspeakable(text: str, lang: str, *, names: Mapping[str, str] | None = None) -> None:
    """Raise InputError for text a voice of `lang` cannot speak (today: Latin words in Urdu, Roman Urdu)."""
    if _primary_language(lang) == "ur":
        refuse_unspeakable_latin(text, names)


def _describe(char: str) -> str:
    """Name a character for the operator, as in "U+200B ZERO WIDTH SPACE"."""
    fallback = "<surrogate>" if unicodedata.category(char) == "Cs" else "<control>"
    return f"U+{ord(char):04X} {unicodedata.name(char, fallback)}"


def _primary_language(lang: str) -> str:
    return lang.replace("_", "-").split("-", 1)[0].strip().lower()


def _split_paragraph(paragraph: str, rules: _SentenceRules) -> list[str]:
    """Sentences of one paragraph; a punctuation-only piece (". . .") joins its neighbour."""
    pieces: list[str] = []
    start = 0
    for match in _TERMINATOR_RUN.finditer(paragraph):
        if _ends_sentence(paragraph, match, rules):
            pieces.append(paragraph[start : match.end()].strip())
            start = match.end()
    pieces.append(paragraph[start:].strip())

    sentences: list[str] = []
    leading = ""
    for piece in filter(None, pieces):
        if _speakable(piece):
            sentences.append(f"{leading} {piece}".lstrip())
            leading = ""
        elif sentences:
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            leading = f"{leading} {piece}".lstrip()
    return sentences


def _speakable(piece: str) -> bool:
    return any(char.isalnum() for char in piece)


def _ends_sentence(paragraph: str, match: re.Match[str], rules: _SentenceRules) -> bool:
    run = match.group()
    rest = paragraph[match.end() :]
    if rest and not rest[0].isspace() and not any(char in _UNSPACED_TERMINATORS for char in run):
        return False  # "3.5", "example.com", "Hello?How"
    following = rest.lstrip().lstrip(_OPENERS)
    if not following:
        return True
    next_char = following[0]
    if next_char.islower():
        return False  # "Wait... then", '"Really?" she asked' (cased scripts only)
    if run.rstrip(_CLOSERS) != ".":
        return True
    words = paragraph[: match.start()].rsplit(maxsplit=1)
    before = words[-1].lstrip(_OPENERS) if words else ""
    if before.lower() in rules.never_final:
        return False
    if next_char.isdigit() and before.lower() in rules.before_number:
        return False
    return not (len(before) == 1 and before.isupper() and next_char.isupper())  # initials: "J. K. Rowling"


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Cut a sentence into pieces of at most `max_chars`, at clauses, else spaces, else anywhere."""
    pieces: list[str] = []
    rest = sentence
    while len(rest) > max_chars:
        cut = _cut_point(rest, max_chars)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _cut_point(text: str, max_chars: int) -> int:
    # endpos one past the limit so the lookahead can see the space after a mark
    clause_ends = [m.end() for m in _CLAUSE_MARK.finditer(text, 0, max_chars + 1) if m.end() <= max_chars]
    if clause_ends and clause_ends[-1] >= max_chars // 2:
        return clause_ends[-1]
    space = text.rfind(" ", 1, max_chars + 1)
    if space > 0:
        return space
    if clause_ends:
        return clause_ends[-1]
    return max_chars
