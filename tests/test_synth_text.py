"""Text preparation: cleaning, refusing hidden characters, sentence splitting, speech normalisation."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pipeline.errors import InputError
from pipeline.synth.text import (
    DEFAULT_MAX_SENTENCE_CHARS,
    clean_text,
    find_forbidden_chars,
    normalise_for_speech,
    refuse_forbidden_chars,
    split_paragraphs,
    split_sentences,
)


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("one\r\ntwo", "one\ntwo"),  # Windows line endings, which the forbidden-char check would refuse
        ("one\rtwo", "one\ntwo"),  # old Mac line endings
        ("one\u2028two", "one\ntwo"),  # Unicode LINE SEPARATOR from word processors
        ("one\u2029two", "one\n\ntwo"),  # Unicode PARAGRAPH SEPARATOR is a paragraph break
        ("a \t\u00a0\u2003 b", "a b"),  # tabs, no-break and em spaces collapse to one space
        ("one  \n   two", "one\ntwo"),  # spaces around a line break
        ("one\n\n\n\n two", "one\n\ntwo"),  # several blank lines are one paragraph break
        ("  \n padded \n ", "padded"),  # surrounding blank space
        ("cafe\u0301", "caf\u00e9"),  # NFC: combining accent composed, so the same text hashes the same
        ("\u201cQuoted\u201d \u2014 it\u2019s fine", "\u201cQuoted\u201d \u2014 it\u2019s fine"),  # typography kept
        ("یہ جملہ ہے۔", "یہ جملہ ہے۔"),  # Urdu unchanged
    ],
)
def test_clean_text(raw: str, cleaned: str) -> None:
    assert clean_text(raw) == cleaned


@pytest.mark.parametrize("hidden", ["\x0b", "\x1c", "\u0085", "\u200b", "\u202e"])
def test_clean_text_keeps_hidden_characters_for_the_check(hidden: str) -> None:
    """Cleaning must not quietly remove what the forbidden-character check has to refuse
    (several of these count as whitespace to str.split)."""
    assert hidden in clean_text(f"a{hidden}b")


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\x00", "U+0000 <control>"),  # C0 control
        ("\x07", "U+0007 <control>"),  # bell
        ("\r", "U+000D <control>"),  # a bare CR is refused; clean_text turns line endings into \n first
        ("\x1b", "U+001B <control>"),  # escape: terminal control sequences
        ("\x7f", "U+007F <control>"),  # DEL
        ("\x85", "U+0085 <control>"),  # C1 control (NEXT LINE)
        ("\u202a", "U+202A LEFT-TO-RIGHT EMBEDDING"),
        ("\u202b", "U+202B RIGHT-TO-LEFT EMBEDDING"),
        ("\u202c", "U+202C POP DIRECTIONAL FORMATTING"),
        ("\u202d", "U+202D LEFT-TO-RIGHT OVERRIDE"),
        ("\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),  # the "Trojan Source" character
        ("\u2066", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("\u2067", "U+2067 RIGHT-TO-LEFT ISOLATE"),
        ("\u2068", "U+2068 FIRST STRONG ISOLATE"),
        ("\u2069", "U+2069 POP DIRECTIONAL ISOLATE"),
        ("\u200e", "U+200E LEFT-TO-RIGHT MARK"),
        ("\u200f", "U+200F RIGHT-TO-LEFT MARK"),
        ("\u061c", "U+061C ARABIC LETTER MARK"),
        ("\u200b", "U+200B ZERO WIDTH SPACE"),
        ("\u200c", "U+200C ZERO WIDTH NON-JOINER"),  # refused even in Urdu and Persian, see find_forbidden_chars
        ("\u200d", "U+200D ZERO WIDTH JOINER"),
        ("\u2060", "U+2060 WORD JOINER"),
        ("\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),  # a BOM pasted mid-text
        ("\U000e0041", "U+E0041 TAG LATIN CAPITAL LETTER A"),  # tag characters spell hidden ASCII
        ("\ud800", "U+D800 <surrogate>"),  # lone surrogate: could not even be stored as UTF-8
    ],
)
def test_find_forbidden_chars_reports_position_and_name(char: str, name: str) -> None:
    assert find_forbidden_chars(f"ab{char}cd") == [(2, name)]


@pytest.mark.parametrize(
    "text",
    [
        "Line one\nLine two\twith a tab",  # the two allowed controls
        "\u201cCurly\u201d quotes \u2014 dashes \u2026 and \u20ac5",  # typography
        "یہ پہلا جملہ ہے۔ کیا یہ دوسرا ہے؟",  # Urdu without ZWNJ
        "Emoji \U0001f44d without joiners",  # a single emoji needs no joiner
        "\u00a0no-break space",  # visible spacing, tidied by clean_text, not refused
    ],
)
def test_find_forbidden_chars_accepts_ordinary_text(text: str) -> None:
    assert find_forbidden_chars(text) == []


def test_windows_line_endings_pass_the_check_after_cleaning() -> None:
    assert find_forbidden_chars(clean_text("Dear all,\r\n\r\nThank you.\r\n")) == []


def test_refuse_forbidden_chars_names_each_character_with_a_one_based_position() -> None:
    with pytest.raises(InputError) as caught:
        refuse_forbidden_chars("Pay\u200b Bob \u202e5\u202c")
    message = str(caught.value)
    assert "3 invisible or control character(s)" in message
    assert "U+200B ZERO WIDTH SPACE at character 4" in message
    assert "U+202E RIGHT-TO-LEFT OVERRIDE at character 10" in message
    assert "hide or reorder what reviewers read" in message
    assert "Remove them" in message


def test_refuse_forbidden_chars_explains_zwnj_in_urdu() -> None:
    with pytest.raises(InputError, match="Urdu and Persian spelling uses it"):
        refuse_forbidden_chars("یہ\u200cجملہ")


def test_refuse_forbidden_chars_lists_at_most_five() -> None:
    with pytest.raises(InputError, match=r"12 invisible .* and 7 more\."):
        refuse_forbidden_chars("\u200b" * 12)


def test_refuse_forbidden_chars_accepts_clean_text() -> None:
    refuse_forbidden_chars("Nothing hidden here.")


def test_split_paragraphs_joins_hard_wrapped_lines() -> None:
    assert split_paragraphs("First line\nwraps here.\n\n\nSecond\r\n\r\nThird") == [
        "First line wraps here.",
        "Second",
        "Third",
    ]


URDU_THREE = "یہ پہلا جملہ ہے۔ کیا یہ دوسرا ہے؟ تیسرا!"


@pytest.mark.parametrize(
    ("lang", "text", "sentences"),
    [
        # plain terminators
        ("en", "One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        # titles are never sentence ends, even before a capital
        ("en", "Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
        # Latin abbreviations continue the sentence whatever follows
        ("en", "Bring food, e.g. Bread. Or not.", ["Bring food, e.g. Bread.", "Or not."]),
        # a lowercase word after a full stop means it was an abbreviation
        ("en", "We sell fruit, veg. and bread. Come in.", ["We sell fruit, veg. and bread.", "Come in."]),
        # "etc." can end a sentence: a capital after it splits
        ("en", "Apples, pears etc. They are fresh.", ["Apples, pears etc.", "They are fresh."]),
        # decimals and domains have no space after the dot
        ("en", "Prices rose 3.5 percent. See example.com now.", ["Prices rose 3.5 percent.", "See example.com now."]),
        # "No." before a number is an abbreviation; a year before a number is not
        ("en", "See No. 5 here. It was 1999. 2000 came.", ["See No. 5 here.", "It was 1999.", "2000 came."]),
        # initials
        ("en", "J. K. Rowling wrote it. Yes.", ["J. K. Rowling wrote it.", "Yes."]),
        # ellipsis: ends a sentence before a capital, not before a lowercase word
        ("en", "Wait... then go. Well… Maybe.", ["Wait... then go.", "Well…", "Maybe."]),
        # closing quotes and brackets stay with their sentence
        ("en", 'He said "Stop." Then (quietly.) She left.', ['He said "Stop."', "Then (quietly.)", "She left."]),
        # a quoted question followed by its speech tag is one sentence
        ("en", '"Really?" she asked. "Yes!"', ['"Really?" she asked.', '"Yes!"']),
        # stacked terminators are one boundary
        ("en", "What?! No way!!! OK.", ["What?!", "No way!!!", "OK."]),
        # a paragraph break ends a sentence even without punctuation
        ("en", "Heading\n\nBody text here.", ["Heading", "Body text here."]),
        # a single newline is hard wrapping, not a boundary
        ("en", "This sentence\nwraps.", ["This sentence wraps."]),
        # punctuation-only pieces stay with the sentence before them
        ("en", "He left. . . . Then.", ["He left. . . .", "Then."]),
        # region and case variants of the tag pick the English rules
        ("en-US", "Mr. Smith left.", ["Mr. Smith left."]),
        ("EN_gb", "Mr. Smith left.", ["Mr. Smith left."]),
        # the brief's Urdu example: ۔ ؟ and ! end sentences
        ("ur", URDU_THREE, ["یہ پہلا جملہ ہے۔", "کیا یہ دوسرا ہے؟", "تیسرا!"]),
        # Urdu writers sometimes leave no space after ۔; it still ends the sentence
        ("ur-PK", "پہلا ہے۔دوسرا ہے۔", ["پہلا ہے۔", "دوسرا ہے۔"]),
        # Urdu text may also use the Latin full stop
        ("ur", "پہلا جملہ. دوسرا جملہ.", ["پہلا جملہ.", "دوسرا جملہ."]),
        # English abbreviations are not applied to other languages
        ("fr", "Voir Dr. Martin. Merci.", ["Voir Dr.", "Martin.", "Merci."]),
        # the generic rules still keep a full stop before a lowercase word
        ("de", "Es war kalt. Danach kam ca. ein Tag.", ["Es war kalt.", "Danach kam ca. ein Tag."]),
        # CJK full stops need no space after them
        ("zh", "这是第一句。这是第二句！好吗？", ["这是第一句。", "这是第二句！", "好吗？"]),
        # Devanagari danda
        ("hi", "यह पहला वाक्य है। यह दूसरा है।", ["यह पहला वाक्य है।", "यह दूसरा है।"]),
        # an unknown or empty tag falls back to the generic rules
        ("", "One. Two.", ["One.", "Two."]),
        # nothing speakable gives no sentences
        ("en", " \n\n ... \n ", []),
    ],
)
def test_split_sentences(lang: str, text: str, sentences: list[str]) -> None:
    assert split_sentences(text, lang) == sentences


def test_split_sentences_splits_long_sentences_at_clauses_first() -> None:
    clause = "the committee reviewed every statement twice"
    text = f"{clause}, {clause}; {clause}, {clause}."
    pieces = split_sentences(text, "en", max_chars=100)
    assert pieces == [f"{clause}, {clause};", f"{clause}, {clause}."]


def test_split_sentences_splits_at_spaces_when_there_is_no_clause() -> None:
    pieces = split_sentences("word " * 30, "en", max_chars=42)
    assert all(len(piece) <= 42 for piece in pieces)
    assert all(set(piece.split()) == {"word"} for piece in pieces)
    assert sum(len(piece.split()) for piece in pieces) == 30


def test_split_sentences_keeps_thousands_separators_whole() -> None:
    # "1,000" has no space after its comma, so it is not a clause boundary
    pieces = split_sentences("We counted 1,000,000 votes and then we counted them again carefully", "en", max_chars=30)
    assert any("1,000,000" in piece for piece in pieces)


def test_split_sentences_cuts_unbroken_text_at_the_limit() -> None:
    assert split_sentences("a" * 25, "en", max_chars=10) == ["a" * 10, "a" * 10, "a" * 5]


def test_split_sentences_default_limit() -> None:
    pieces = split_sentences("x " * 1000, "en")
    assert max(len(piece) for piece in pieces) <= DEFAULT_MAX_SENTENCE_CHARS


def test_split_sentences_rejects_a_zero_limit() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("Hi.", "en", max_chars=0)


_ALPHABET = st.sampled_from(list("abc ABC 123 .!?…,;:\n\"')۔؟یہ。") + ["Mr.", "e.g.", "No.", "\n\n"])


@given(
    text=st.lists(_ALPHABET, max_size=80).map("".join),
    max_chars=st.integers(5, 60),
    lang=st.sampled_from(["en", "ur", "zh"]),
)
def test_split_sentences_loses_and_reorders_nothing(text: str, max_chars: int, lang: str) -> None:
    """Every non-space character of the text comes out once, in order, in pieces within the limit."""
    assume(all(any(char.isalnum() for char in paragraph) for paragraph in split_paragraphs(text)))
    pieces = split_sentences(text, lang, max_chars=max_chars)
    assert re.sub(r"\s", "", "".join(pieces)) == re.sub(r"\s", "", clean_text(text))
    assert all(0 < len(piece) <= max_chars and piece == piece.strip() for piece in pieces)


@pytest.mark.parametrize(
    ("sentence", "spoken"),
    [
        ("Salt & pepper.", "Salt and pepper."),  # espeak-ng drops "&" without a sound
        ("Up 5% today.", "Up 5 percent today."),  # character-based engines have no "%" symbol
        ("Mr. Smith and Mrs. Jones.", "Mister Smith and Missus Jones."),  # espeak-ng ends a sentence at "Mr."
        ("Ms. Lee and Ms Park.", "Mizz Lee and Mizz Park."),  # "Ms" alone is spelled out as "M S"
        ("Ask Dr. Who or Prof. Plum.", "Ask Doctor Who or Professor Plum."),
        ("Go to the Dr.", "Go to the Dr."),  # no name follows: could be "Drive", left alone
        ("J. K. Rowling spoke.", "J K Rowling spoke."),  # initials: the dots would end espeak-ng's sentence
        ("Room No. 5 is open.", "Room number 5 is open."),  # otherwise read "no. five"
        ("No. I refuse.", "No. I refuse."),  # "No." not before a number is the word no
        ("Fruit, e.g. apples, i.e. food.", "Fruit, for example apples, that is food."),
        ("Us vs. them.", "Us versus them."),  # otherwise read "vee ess"
        ("It costs 3.5 dollars on 2024-05-01.", "It costs 3.5 dollars on 2024-05-01."),  # numbers left to the engine
    ],
)
def test_normalise_for_speech_english(sentence: str, spoken: str) -> None:
    assert normalise_for_speech(sentence, "en-US") == spoken


def test_normalise_for_speech_leaves_other_languages_alone() -> None:
    # expanding "&" or "%" needs words of that language
    assert normalise_for_speech("Preis 5% & mehr.", "de") == "Preis 5% & mehr."


def test_normalise_for_speech_speaks_urdu_numbers_and_symbols() -> None:
    # Urdu has its own rules (pipeline.synth.urdu; the full table is in test_urdu_text.py)
    assert normalise_for_speech("قیمت 5% & زیادہ۔", "ur") == "قیمت پانچ فیصد اور زیادہ۔"
