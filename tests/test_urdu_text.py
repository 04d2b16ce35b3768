"""Urdu text a voice can speak: expected readings written from Urdu grammar, not from the code's output.

Sources for the tables: the Urdu numerals 0-99 are each their own word (as
in any Urdu grammar's number table, e.g. Schmidt, *Urdu: An Essential
Grammar*, ch. 7); large numbers group by hundred, thousand, lakh (10^5),
crore (10^7), arab (10^9), kharab (10^11); years before 2000 are read in
hundreds (انیس سو سینتالیس), later ones as numbers (دو ہزار پچیس); ordinals
1-4 and 6 are their own words, the rest add واں / ویں.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from conftest import DEMO_VOICE, store_snapshot
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.errors import InputError
from pipeline.services import statements
from pipeline.services.voices import add_voice
from pipeline.services.workspace import utcnow
from pipeline.synth.text import canonical_text, normalise_for_speech
from pipeline.synth.urdu import (
    canonical_urdu,
    cardinal,
    comparable_urdu,
    ordinal,
    refuse_unspeakable_latin,
    speakable_urdu,
    year,
)

ISSUE_EXAMPLE = "عمران خان نے 42 دن بعد ۱۲ مارچ 2025 کو خط لکھا۔"


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "صفر"),
        (1, "ایک"),
        (6, "چھ"),
        (9, "نو"),
        (11, "گیارہ"),
        (15, "پندرہ"),
        (19, "انیس"),  # 20 - 1, not "دس نو"
        (21, "اکیس"),
        (29, "انتیس"),
        (38, "اڑتیس"),
        (42, "بیالیس"),  # the issue's example
        (49, "انچاس"),
        (50, "پچاس"),
        (53, "ترپن"),
        (59, "انسٹھ"),
        (67, "سڑسٹھ"),
        (69, "انہتر"),
        (75, "پچھتر"),
        (79, "اناسی"),
        (89, "نواسی"),
        (90, "نوے"),
        (99, "ننانوے"),
        (100, "ایک سو"),
        (105, "ایک سو پانچ"),
        (250, "دو سو پچاس"),
        (1000, "ایک ہزار"),
        (1947, "ایک ہزار نو سو سینتالیس"),  # as a quantity; as a year it is انیس سو سینتالیس
        (25000, "پچیس ہزار"),
        (100000, "ایک لاکھ"),  # not "سو ہزار"
        (250000, "دو لاکھ پچاس ہزار"),
        (1500000, "پندرہ لاکھ"),
        (10000000, "ایک کروڑ"),
        (240000000, "چوبیس کروڑ"),  # Pakistan's population, as the news reads it
        (1000000000, "ایک ارب"),
        (100000000000, "ایک کھرب"),
    ],
)
def test_cardinal_numbers(n: int, words: str) -> None:
    assert cardinal(n) == words


def test_every_number_below_a_hundred_is_one_distinct_word() -> None:
    words = [cardinal(n) for n in range(100)]
    assert len(set(words)) == 100
    assert all(" " not in w for w in words)


@pytest.mark.parametrize(
    ("n", "words"),
    [(1947, "انیس سو سینتالیس"), (1900, "انیس سو"), (1857, "اٹھارہ سو ستاون"), (2025, "دو ہزار پچیس"), (2000, "دو ہزار")],
)
def test_years(n: int, words: str) -> None:
    assert year(n) == words


@pytest.mark.parametrize(
    ("n", "suffix", "words"),
    [
        (1, "واں", "پہلا"),
        (2, "واں", "دوسرا"),
        (3, "ویں", "تیسری"),
        (4, "واں", "چوتھا"),
        (6, "واں", "چھٹا"),
        (5, "واں", "پانچواں"),
        (9, "ویں", "نویں"),  # not نوویں
        (10, "ویں", "دسویں"),
        (27, "ویں", "ستائیسویں"),  # "27ویں ترمیم"
    ],
)
def test_ordinals(n: int, suffix: str, words: str) -> None:
    assert ordinal(n, suffix) == words


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        (ISSUE_EXAMPLE, "عمران خان نے بیالیس دن بعد بارہ مارچ دو ہزار پچیس کو خط لکھا۔"),
        ("۱۴ اگست ۱۹۴۷ کو", "چودہ اگست انیس سو سینتالیس کو"),  # Urdu digits, a date before 2000
        ("12/03/2025", "بارہ مارچ دو ہزار پچیس"),  # day first, as in Pakistan
        ("2025-03-12", "بارہ مارچ دو ہزار پچیس"),  # ISO
        ("مارچ 2025 میں", "مارچ دو ہزار پچیس میں"),
        ("1971ء میں", "انیس سو اکہتر میں"),  # the year sign is not read
        ("سن 1857 میں", "سن اٹھارہ سو ستاون میں"),
        ("10:30 بجے", "دس بج کر تیس منٹ"),
        ("شام 7:00 بجے", "شام سات بجے"),
        ("42% ووٹ", "بیالیس فیصد ووٹ"),
        ("۶۰٪ لوگ", "ساٹھ فیصد لوگ"),  # Arabic percent sign
        ("12.5% اضافہ", "بارہ اعشاریہ پانچ فیصد اضافہ"),
        ("Rs. 1,500/- جرمانہ", "ایک ہزار پانچ سو روپے جرمانہ"),
        ("500 روپے", "پانچ سو روپے"),
        ("1 روپیہ", "ایک روپیہ"),
        ("Rs 99.50", "ننانوے روپے پچاس پیسے"),
        ("1,00,000 افراد", "ایک لاکھ افراد"),  # South Asian comma grouping
        ("100,000 افراد", "ایک لاکھ افراد"),  # Western comma grouping, same number
        ("۲۴۰۰۰۰۰۰۰ شہری", "چوبیس کروڑ شہری"),
        ("27ویں ترمیم", "ستائیسویں ترمیم"),
        ("1st", "پہلا"),
        ("3.5 کلو", "تین اعشاریہ پانچ کلو"),
        ("PTI کا جلسہ", "پی ٹی آئی کا جلسہ"),  # acronym by Urdu letter names
        ("NATO اجلاس", "نیٹو اجلاس"),  # in the names table: read as a word
        ("Dr. عارف", "ڈاکٹر عارف"),
        ("نبی ﷺ نے", "نبی صلی اللہ علیہ وسلم نے"),
        ("كيا هے", "کیا ہے"),  # Arabic kaf, yeh and heh
        ("۴۲ دن", "بیالیس دن"),
        ("٤٢ دن", "بیالیس دن"),  # Arabic-Indic digits
    ],
)
def test_speakable_urdu(written: str, spoken: str) -> None:
    assert speakable_urdu(written) == spoken


def test_normalise_for_speech_reads_the_issue_example_without_digits() -> None:
    spoken = normalise_for_speech(ISSUE_EXAMPLE, "ur")
    assert not any(c.isdigit() for c in spoken)
    assert spoken == "عمران خان نے بیالیس دن بعد بارہ مارچ دو ہزار پچیس کو خط لکھا۔"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("\u064a", "\u06cc"),  # ARABIC YEH → FARSI YEH
        ("\u0649", "\u06cc"),  # ALEF MAKSURA
        ("\u0643", "\u06a9"),  # ARABIC KAF → KEHEH
        ("\u0647", "\u06c1"),  # ARABIC HEH → HEH GOAL
        ("\u0629", "\u06c3"),  # TEH MARBUTA → its Urdu form
        ("\u06c1\u0654", "\u06c2"),  # gol he + hamza above composes (NFC)
        ("\u06c0", "\u06c2"),  # Persian he-with-hamza → Urdu's
        ("\u0664\u0665", "\u06f4\u06f5"),  # Arabic-Indic 4 5 → Urdu 4 5 (different glyphs, same digits)
        ("\ufeed\ufef3", "\u0648\u06cc"),  # presentation forms → letters (then ي → ی)
        ("\ufdfa", "\ufdfa"),  # ﷺ stays a ligature in the approved text; it is expanded only when spoken
    ],
)
def test_canonical_urdu(raw: str, canonical: str) -> None:
    assert canonical_urdu(raw) == canonical
    assert unicodedata.is_normalized("NFC", canonical_urdu(raw))


def test_canonical_text_is_only_for_urdu() -> None:
    assert canonical_text("كتاب", "ar") == "كتاب"  # Arabic keeps its own letters
    assert canonical_text("كتاب", "ur") == "کتاب"


@pytest.mark.parametrize(
    "text",
    [
        "PTI کا جلسہ ہوا۔",
        "Imran Khan نے کہا۔",  # in the names table
        "27th ترمیم",  # ordinal suffix after a number
        "Rs. 500 دیے۔",
    ],
)
def test_latin_words_that_can_be_spoken_are_allowed(text: str) -> None:
    refuse_unspeakable_latin(text)


def test_unknown_latin_word_is_refused_in_one_line() -> None:
    with pytest.raises(InputError, match="Latin-script word.*: Zubair.*Urdu script") as err:
        refuse_unspeakable_latin("Zubair نے خط لکھا۔")
    assert "\n" not in str(err.value)


def test_workspace_names_table_extends_the_builtin_one() -> None:
    refuse_unspeakable_latin("Zubair نے خط لکھا۔", {"Zubair": "زبیر"})
    assert speakable_urdu("Zubair نے خط لکھا۔", {"Zubair": "زبیر"}) == "زبیر نے خط لکھا۔"


def test_roman_urdu_is_recognised() -> None:
    with pytest.raises(InputError, match="Roman Urdu.*Urdu script"):
        refuse_unspeakable_latin("Hum apne leader ke saath hain aur insaaf chahte hain.")


def test_comparison_reads_both_sides_the_same_way() -> None:
    # A recogniser writes digits or words, with or without diacritics; both compare equal.
    assert comparable_urdu("۴۲ دن بعد، خط لکھا۔") == comparable_urdu("بیالیس دن بعد خطّ لکھا")


# --- at submit: the canonical text is stored and hashed, unspeakable text refused ---------------------------


@pytest.fixture
def urdu_workspace(workspace, tmp_path: Path):
    folder = tmp_path / "voice-ur"
    folder.mkdir()
    text = (DEMO_VOICE / "voice.toml").read_text()
    text = text.replace('id = "demo"', 'id = "demo-ur"').replace('languages = ["en"]', 'languages = ["en", "ur"]')
    (folder / "voice.toml").write_text(text)
    add_voice(workspace, folder, actor="ops", now=utcnow())
    return workspace


def _submit(ws, text: str):
    return statements.submit(ws, voice_id="demo-ur", purpose="public-statement", channel="social", language="ur",
                             text=text, actor="sam", now=utcnow())


def test_submit_stores_and_hashes_the_canonical_urdu(urdu_workspace) -> None:
    row = _submit(urdu_workspace, "ہم نے خط لكھا هے۔")  # Arabic kaf and heh
    rev = row.revisions[-1]
    assert rev.text == "ہم نے خط لکھا ہے۔"
    from pipeline.domain import text_hash

    assert rev.sha256 == text_hash("ہم نے خط لکھا ہے۔")


def test_revising_to_a_look_alike_spelling_is_no_revision(urdu_workspace) -> None:
    row = _submit(urdu_workspace, "ہم نے خط لکھا ہے۔")
    with pytest.raises(InputError, match="identical"):
        statements.revise(urdu_workspace, row.id, "ہم نے خط لكھا هے۔", actor="sam", now=utcnow())


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("Zubair نے خط لکھا۔", "Urdu script"),
        ("Hum apne leader ke saath hain aur insaaf chahte hain.", "Roman Urdu"),
    ],
)
def test_cli_refuses_unspeakable_urdu_and_leaves_the_store_unchanged(urdu_workspace, tmp_path, content, match) -> None:
    path = tmp_path / "statement.txt"
    path.write_text(content, encoding="utf-8")
    before = store_snapshot(urdu_workspace.home)
    result = CliRunner().invoke(app, ["submit", str(path), "--voice", "demo-ur", "--purpose", "public-statement",
                                      "--channel", "social", "--lang", "ur", "--home", str(urdu_workspace.home),
                                      "--as", "sam"])
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert "\n" not in err and "Traceback" not in err and match in err, err
    assert store_snapshot(urdu_workspace.home) == before
