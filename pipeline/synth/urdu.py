"""Urdu text a voice can speak: canonical letters, numbers in words, Latin words refused or spelled.

Pure functions, no I/O. Three uses, one normalisation:

* `canonical_urdu` runs at submit, before the text is hashed and shown to
  reviewers: NFC, Arabic look-alike letters (ي ك ه ى ة) mapped to the Urdu
  ones (ی ک ہ ی ۃ), Arabic-Indic digits (٠–٩) to Urdu digits (۰–۹) and Arabic
  presentation forms to plain letters. Two texts that look the same to a
  reader then hash the same.
* `refuse_unspeakable_latin` runs at submit too: a Latin-script word inside
  Urdu text is an acronym (spelled with Urdu letter names, PTI → پی ٹی آئی),
  a name in the editable table (`LATIN_NAMES`, extended by
  ``[urdu] names`` in voxgate.toml), or refused with one line asking for
  Urdu spelling. A statement wholly in Roman Urdu is refused with the same advice.
* `speakable_urdu` runs on each sentence just before synthesis (never on the
  approved text), and on both sides of a recogniser comparison: numbers in
  Latin or Urdu digits become Urdu words with South Asian grouping (ہزار،
  لاکھ، کروڑ، ارب، کھرب), and dates, years, times, percentages, currency,
  ordinals and a few abbreviations are read as an Urdu speaker reads them.

No maintained library does this: num2words 0.5 has no Urdu (`NotImplementedError`
for "ur"), and its Hindi reads digits into Devanagari words. Urdu numbers
0–99 are irregular, so they are one table, written from Urdu grammar.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Final

from pipeline.errors import InputError

# 0-99: each one its own word (no rule builds 47 from 40 and 7).
UNITS: Final[tuple[str, ...]] = tuple(
    """
    صفر ایک دو تین چار پانچ چھ سات آٹھ نو
    دس گیارہ بارہ تیرہ چودہ پندرہ سولہ سترہ اٹھارہ انیس
    بیس اکیس بائیس تئیس چوبیس پچیس چھبیس ستائیس اٹھائیس انتیس
    تیس اکتیس بتیس تینتیس چونتیس پینتیس چھتیس سینتیس اڑتیس انتالیس
    چالیس اکتالیس بیالیس تینتالیس چوالیس پینتالیس چھیالیس سینتالیس اڑتالیس انچاس
    پچاس اکاون باون ترپن چون پچپن چھپن ستاون اٹھاون انسٹھ
    ساٹھ اکسٹھ باسٹھ تریسٹھ چونسٹھ پینسٹھ چھیاسٹھ سڑسٹھ اڑسٹھ انہتر
    ستر اکہتر بہتر تہتر چوہتر پچھتر چھہتر ستتر اٹھہتر اناسی
    اسی اکیاسی بیاسی تراسی چوراسی پچاسی چھیاسی ستاسی اٹھاسی نواسی
    نوے اکانوے بانوے ترانوے چورانوے پچانوے چھیانوے ستانوے اٹھانوے ننانوے
    """.split()
)
assert len(UNITS) == 100

# South Asian grouping: 1,00,00,000 is one crore, not ten million.
_SCALES: Final = ((10**11, "کھرب"), (10**9, "ارب"), (10**7, "کروڑ"), (10**5, "لاکھ"), (1000, "ہزار"), (100, "سو"))
MONTHS: Final = ("جنوری", "فروری", "مارچ", "اپریل", "مئی", "جون", "جولائی", "اگست", "ستمبر", "اکتوبر", "نومبر", "دسمبر")
# Ordinals 1-4 and 6 are their own words; the rest add واں (masc.) / ویں (fem. and oblique).
_IRREGULAR_ORDINAL_STEMS: Final = {1: "پہل", 2: "دوسر", 3: "تیسر", 4: "چوتھ", 6: "چھٹ"}
_ORDINAL_SUFFIX_ENDINGS: Final = {"واں": "ا", "ویں": "ی", "وی": "ی", "وے": "ے"}
DECIMAL_POINT_WORD: Final = "اعشاریہ"
PERCENT_WORD: Final = "فیصد"
MINUS_WORD: Final = "منفی"

LETTER_NAMES: Final = dict(
    zip(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "اے بی سی ڈی ای ایف جی ایچ آئی جے کے ایل ایم این او پی کیو آر ایس ٹی یو وی ڈبلیو ایکس وائی زیڈ".split(),
        strict=True,
    )
)
"""English letter names as Urdu speakers say them, for acronyms (PTI → پی ٹی آئی)."""

LATIN_NAMES: Final[Mapping[str, str]] = {
    # Names and words often left in Latin script in Urdu news copy; a workspace
    # adds its own under [urdu] names in voxgate.toml. Keys are case-folded.
    "imran": "عمران", "khan": "خان", "pakistan": "پاکستان", "lahore": "لاہور", "karachi": "کراچی",
    "islamabad": "اسلام آباد", "rawalpindi": "راولپنڈی", "peshawar": "پشاور", "quetta": "کوئٹہ",
    "facebook": "فیس بک", "twitter": "ٹوئٹر", "whatsapp": "واٹس ایپ", "youtube": "یوٹیوب",
    "internet": "انٹرنیٹ", "online": "آن لائن", "nato": "نیٹو", "unesco": "یونیسکو", "unicef": "یونیسیف",
    "january": "جنوری", "february": "فروری", "march": "مارچ", "april": "اپریل", "may": "مئی", "june": "جون",
    "july": "جولائی", "august": "اگست", "september": "ستمبر", "october": "اکتوبر", "november": "نومبر",
    "december": "دسمبر",
}

# Abbreviations read out in full. Honorifics are Arabic ligatures or marks.
_ABBREVIATIONS: Final = (
    (re.compile("\ufdfa"), " صلی اللہ علیہ وسلم "),  # ﷺ
    (re.compile("\u0610"), " صلی اللہ علیہ وسلم "),  # ؐ (small sallallahou sign)
    (re.compile("\u0611"), " علیہ السلام "),  # ؑ
    (re.compile("\u0612"), " رحمتہ اللہ علیہ "),  # ؒ
    (re.compile("\u0613"), " رضی اللہ عنہ "),  # ؓ
    (re.compile(r"(?<![\w])ق\s?م(?![\w])"), "قبل مسیح"),
    (re.compile(r"\bDr\.?(?=\s)"), "ڈاکٹر"),
    (re.compile(r"\bMr\.?(?=\s)"), "مسٹر"),
    (re.compile(r"\bkm\b"), "کلومیٹر"),
    (re.compile(r"\bkg\b"), "کلوگرام"),
    (re.compile(r"(?<![\w])&(?![\w])"), " اور "),
)

_D: Final = "0-9۰-۹٠-٩"
_DIGIT_VALUE: Final = {**{c: i for i, c in enumerate("0123456789")}, **{c: i for i, c in enumerate("۰۱۲۳۴۵۶۷۸۹")},
                       **{c: i for i, c in enumerate("٠١٢٣٤٥٦٧٨٩")}}
_INT: Final = f"[{_D}]{{1,3}}(?:[,٬][{_D}]{{2}})*[,٬][{_D}]{{3}}|[{_D}]+"  # 1,00,000 / 100,000 / 100000
_NUMBER: Final = f"(?:{_INT})(?:[.٫][{_D}]+)?"
_MONTH_ALT: Final = "|".join(MONTHS)
_NOT_DIGIT_BEFORE: Final = f"(?<![{_D}.٫,٬])"
_NOT_DIGIT_AFTER: Final = f"(?![{_D}]|[.٫,٬][{_D}])"

_DATE_DAY_MONTH_YEAR: Final = re.compile(rf"{_NOT_DIGIT_BEFORE}([{_D}]{{1,2}})\s*({_MONTH_ALT})(?:[\s,،]*([{_D}]{{4}}))?{_NOT_DIGIT_AFTER}\s*(ء|؁)?")
_DATE_MONTH_YEAR: Final = re.compile(rf"({_MONTH_ALT})[\s,،]*([{_D}]{{4}}){_NOT_DIGIT_AFTER}\s*(ء|؁)?")
_DATE_NUMERIC: Final = re.compile(rf"{_NOT_DIGIT_BEFORE}([{_D}]{{1,2}})([/\-.])([{_D}]{{1,2}})\2([{_D}]{{4}}){_NOT_DIGIT_AFTER}")
_DATE_ISO: Final = re.compile(rf"{_NOT_DIGIT_BEFORE}([{_D}]{{4}})-([{_D}]{{2}})-([{_D}]{{2}}){_NOT_DIGIT_AFTER}")
_YEAR_MARKED: Final = re.compile(rf"{_NOT_DIGIT_BEFORE}([{_D}]{{4}}){_NOT_DIGIT_AFTER}\s*(?:ء|؁)")
_YEAR_AFTER_WORD: Final = re.compile(rf"(?<![\w])(سن|سنہ|سال)\s+([{_D}]{{4}}){_NOT_DIGIT_AFTER}")
_TIME: Final = re.compile(rf"{_NOT_DIGIT_BEFORE}([{_D}]{{1,2}}):([{_D}]{{2}}){_NOT_DIGIT_AFTER}(\s*بجے)?")
_PERCENT: Final = re.compile(rf"{_NOT_DIGIT_BEFORE}({_NUMBER})\s*[%٪]")
_CURRENCY_BEFORE: Final = re.compile(rf"(?:\bRs\.?|\bPKR\b|₨|روپے)\s*({_NUMBER})(?:\s*/-)?(?:\s*روپے)?")
_CURRENCY_AFTER: Final = re.compile(rf"{_NOT_DIGIT_BEFORE}({_NUMBER})(?:\s*/-)?\s*(?:روپے|روپیہ|روپئے)")
_DOLLARS: Final = re.compile(rf"\$\s*({_NUMBER})")
_ORDINAL: Final = re.compile(rf"{_NOT_DIGIT_BEFORE}([{_D}]+)\s?-?(واں|ویں|وی|وے)(?![\w])")
_ORDINAL_ENGLISH: Final = re.compile(rf"{_NOT_DIGIT_BEFORE}([{_D}]+)(?:st|nd|rd|th)(?![A-Za-z])")  # "1st" in Urdu copy
_PLAIN_NUMBER: Final = re.compile(rf"(?:(?<![\w])([-−]))?{_NOT_DIGIT_BEFORE}({_NUMBER}){_NOT_DIGIT_AFTER}")

_LOOKALIKES: Final = str.maketrans(
    {
        "\u064a": "\u06cc",  # ARABIC YEH → FARSI YEH (Urdu choti ye)
        "\u0649": "\u06cc",  # ALEF MAKSURA → FARSI YEH
        "\u0643": "\u06a9",  # ARABIC KAF → KEHEH
        "\u0647": "\u06c1",  # ARABIC HEH → HEH GOAL (gol he)
        "\u06c0": "\u06c2",  # HEH WITH YEH ABOVE → HEH GOAL WITH HAMZA ABOVE (izafat)
        "\u0629": "\u06c3",  # TEH MARBUTA → TEH MARBUTA GOAL
        **{chr(0x0660 + i): chr(0x06F0 + i) for i in range(10)},  # Arabic-Indic → Urdu digits
    }
)
_PRESENTATION_FORM: Final = re.compile("[\ufb50-\ufdef\ufe70-\ufefe]")  # not ﷺ and other word ligatures (FDF0-FDFF)
_ARABIC_SCRIPT: Final = re.compile("[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")
_LATIN_WORD: Final = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")
_DIACRITICS: Final = re.compile("[\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")  # harakat, superscript alef, Quranic marks, tatweel
_SPACES: Final = re.compile(r"\s+")
_ALLOWED_LATIN: Final = re.compile(r"^(?:Rs|PKR|Dr|Mr|km|kg)$")

_ROMAN_URDU_WORDS: Final = frozenset(
    "hai hain ka ki ke ko se mein main nahi nahin aur tha thi ho kya ye yeh woh wo hum aap ap ne bhi "
    "par pe kar kiya gaya gayi liye lekin agar hamari hamara apni apne sab log din saal".split()
)
_ROMAN_URDU_SHARE: Final = 0.25  # a quarter of the words being Urdu function words is no English text


def canonical_urdu(text: str) -> str:
    """NFC Urdu with Arabic look-alike letters, digits and presentation forms mapped to the Urdu ones.

    Run before hashing, so what reviewers approve is the form that is spoken and compared.
    """
    text = _PRESENTATION_FORM.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).translate(_LOOKALIKES))


def cardinal(n: int) -> str:
    """An integer in Urdu words, grouped the South Asian way: 150000 → ایک لاکھ پچاس ہزار."""
    if n < 0:
        return f"{MINUS_WORD} {cardinal(-n)}"
    if n < 100:
        return UNITS[n]
    words: list[str] = []
    for value, name in _SCALES:
        count, n = divmod(n, value)
        if count:
            words.append(f"{cardinal(count)} {name}")
    if n:
        words.append(UNITS[n])
    return " ".join(words)


def year(n: int) -> str:
    """A year as it is read: 1947 → انیس سو سینتالیس (hundreds), 2025 → دو ہزار پچیس."""
    if 1100 <= n <= 1999:
        hundreds, rest = divmod(n, 100)
        return f"{UNITS[hundreds]} سو" + (f" {UNITS[rest]}" if rest else "")
    return cardinal(n)


def ordinal(n: int, suffix: str = "واں") -> str:
    """An ordinal with the written suffix's gender: (1, واں) → پہلا, (27, ویں) → ستائیسویں."""
    if suffix not in _ORDINAL_SUFFIX_ENDINGS:
        raise ValueError(f"unknown ordinal suffix {suffix!r}")
    if n in _IRREGULAR_ORDINAL_STEMS:
        return _IRREGULAR_ORDINAL_STEMS[n] + _ORDINAL_SUFFIX_ENDINGS[suffix]
    if n == 9:
        return "نو" + suffix[1:]  # نواں / نویں, not نوواں
    return cardinal(n) + suffix


def decimal(text: str) -> str:
    """A written number (any digits, grouping commas, a decimal point) in words; decimals digit by digit."""
    whole, fraction = _split_decimal(text)
    words = cardinal(_int(whole))
    if fraction:
        words += f" {DECIMAL_POINT_WORD} " + " ".join(UNITS[_DIGIT_VALUE[c]] for c in fraction)
    return words


def time_of_day(hours: int, minutes: int) -> str:
    """10:00 → دس بجے, 10:30 → دس بج کر تیس منٹ (the formal reading, never ambiguous)."""
    if minutes == 0:
        return f"{cardinal(hours)} بجے"
    return f"{cardinal(hours)} بج کر {cardinal(minutes)} منٹ"


def spell_acronym(word: str) -> str:
    """PTI → پی ٹی آئی: each capital by its Urdu letter name."""
    return " ".join(LETTER_NAMES[c] for c in word.upper())


def latin_words(text: str) -> list[str]:
    return _LATIN_WORD.findall(text)


def is_acronym(word: str) -> bool:
    return word.isascii() and word.isalpha() and word.isupper() and len(word) <= 8


def refuse_unspeakable_latin(text: str, names: Mapping[str, str] | None = None) -> None:
    """Raise InputError for Roman Urdu, or for Latin words that are neither acronyms nor known names."""
    table = _names(names)
    words = latin_words(_ORDINAL_ENGLISH.sub(" ", text))
    if not words:
        return
    arabic = len(_ARABIC_SCRIPT.findall(text))
    latin = sum(len(w) for w in words)
    folded = [w.casefold() for w in words]
    roman = [w for w in folded if w in _ROMAN_URDU_WORDS]
    if latin > arabic and len(words) >= 3 and len(roman) >= _ROMAN_URDU_SHARE * len(words):
        shown = ", ".join(dict.fromkeys(roman[:4]))
        raise InputError(
            f"The statement looks like Roman Urdu (Urdu in Latin letters: {shown}); a voice cannot speak it, "
            "so write it in Urdu script and submit it again."
        )
    unknown = [w for w in dict.fromkeys(words)
               if not (is_acronym(w) or w.casefold() in table or _ALLOWED_LATIN.match(w))]
    if unknown:
        shown = ", ".join(unknown[:6]) + (f" and {len(unknown) - 6} more" if len(unknown) > 6 else "")
        raise InputError(
            f"The Urdu statement has Latin-script word(s) a voice cannot speak: {shown}; write them in Urdu "
            "script as they are pronounced, or add a name to [urdu] names in voxgate.toml."
        )


def speakable_urdu(sentence: str, names: Mapping[str, str] | None = None) -> str:
    """What a voice reads for one Urdu sentence: canonical letters, every number and Latin word in Urdu words."""
    table = _names(names)
    s = canonical_urdu(sentence)
    for pattern, replacement in _ABBREVIATIONS:
        s = pattern.sub(replacement, s)
    s = _DATE_ISO.sub(lambda m: _date(m.group(3), m.group(2), m.group(1)) or m.group(), s)
    s = _DATE_NUMERIC.sub(lambda m: _date(m.group(1), m.group(3), m.group(4)) or m.group(), s)
    s = _DATE_DAY_MONTH_YEAR.sub(
        lambda m: f" {cardinal(_int(m.group(1)))} {m.group(2)}" + (f" {year(_int(m.group(3)))} " if m.group(3) else " "), s)
    s = _DATE_MONTH_YEAR.sub(lambda m: f" {m.group(1)} {year(_int(m.group(2)))} ", s)
    s = _YEAR_MARKED.sub(lambda m: f" {year(_int(m.group(1)))} ", s)
    s = _YEAR_AFTER_WORD.sub(lambda m: f"{m.group(1)} {year(_int(m.group(2)))}", s)
    s = _TIME.sub(_time, s)
    s = _PERCENT.sub(lambda m: f" {decimal(m.group(1))} {PERCENT_WORD} ", s)
    s = _CURRENCY_BEFORE.sub(lambda m: f" {_money(m.group(1), 'روپیہ', 'روپے', 'پیسے')} ", s)
    s = _CURRENCY_AFTER.sub(lambda m: f" {_money(m.group(1), 'روپیہ', 'روپے', 'پیسے')} ", s)
    s = _DOLLARS.sub(lambda m: f" {_money(m.group(1), 'ڈالر', 'ڈالر', 'سینٹ')} ", s)
    s = _ORDINAL.sub(lambda m: f" {ordinal(_int(m.group(1)), m.group(2))} ", s)
    s = _ORDINAL_ENGLISH.sub(lambda m: f" {ordinal(_int(m.group(1)))} ", s)
    s = _PLAIN_NUMBER.sub(_plain_number, s)
    s = _LATIN_WORD.sub(lambda m: _latin(m.group(), table), s)
    s = _SPACES.sub(" ", s).strip()
    return re.sub(r"\s+([۔؟،؛!.,?])", r"\1", s)


def comparable_urdu(text: str, names: Mapping[str, str] | None = None) -> list[str]:
    """Words for comparing approved Urdu text with a transcript: spoken form, no diacritics or punctuation."""
    s = _DIACRITICS.sub("", speakable_urdu(text, names))
    s = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in s)
    return s.split()


def _names(extra: Mapping[str, str] | None) -> dict[str, str]:
    return {**LATIN_NAMES, **{k.casefold(): v for k, v in (extra or {}).items()}}


def _int(digits: str) -> int:
    value = 0
    for c in digits:
        if c in _DIGIT_VALUE:
            value = value * 10 + _DIGIT_VALUE[c]
    return value


def _split_decimal(text: str) -> tuple[str, str]:
    whole, _, fraction = text.replace("٫", ".").partition(".")
    return whole, fraction


def _date(day: str, month: str, year_digits: str) -> str | None:
    d, m = _int(day), _int(month)
    if not (1 <= d <= 31 and 1 <= m <= 12):
        return None  # not a date: leave it to the number rules
    return f" {cardinal(d)} {MONTHS[m - 1]} {year(_int(year_digits))} "


def _time(m: re.Match[str]) -> str:
    hours, minutes = _int(m.group(1)), _int(m.group(2))
    if hours > 24 or minutes > 59:
        return f" {cardinal(hours)} {cardinal(minutes)} "
    return f" {time_of_day(hours, minutes)} "


def _money(amount: str, one: str, many: str, cents_name: str) -> str:
    whole, fraction = _split_decimal(amount)
    units = _int(whole)
    words = f"{cardinal(units)} {one if units == 1 else many}"
    if fraction:
        cents = _int((fraction + "0")[:2])
        if cents:
            words += f" {cardinal(cents)} {cents_name}"
    return words


def _plain_number(m: re.Match[str]) -> str:
    sign = f"{MINUS_WORD} " if m.group(1) else ""
    return f" {sign}{decimal(m.group(2))} "


def _latin(word: str, table: Mapping[str, str]) -> str:
    if word.casefold() in table:
        return table[word.casefold()]
    if is_acronym(word):
        return spell_acronym(word)
    return word  # refused at submit; left as written so nothing is silently dropped
