"""The consent script the owner reads aloud, and its challenge phrase. Pure: no I/O, no clock.

The script names the owner, the organisation, the scope and the end date in
the voice's language, and ends with a challenge phrase: random words that
nobody could have recorded before the script was printed, so a recording of
the owner saying them proves the consent was spoken for this enrollment.

Challenge words are common concrete nouns that a small recogniser hears
reliably (checked with Whisper tiny.en on the packaged Piper voice, see
scripts/calibrate_speaker.py --asr). Phonetic variety: each phrase takes its
words from different stressed-vowel groups, with different first letters, so
no two words can blur into one another.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from pipeline.domain.model import ApprovalPolicyKind, Consent
from pipeline.errors import InputError

CHALLENGE_WORD_COUNT: Final = 4

#: English challenge words by stressed vowel. Homophones, numbers, words with two
#: spellings (harbor/harbour), words that are part of how dates are said, and 51 words
#: Whisper tiny.en misheard at least once in the packaged Piper voice are left out
#: ("pilot" once and "island" twice in 138 scripts, measured after resampling moved to libsoxr).
_EN_WORDS: Final[Mapping[str, tuple[str, ...]]] = {
    "ae": ("apple", "basket", "candle", "lantern", "rabbit", "saddle", "cactus", "camel"),
    "eh": ("melon", "pebble", "helmet", "penguin", "lemon", "velvet", "jelly", "shelter"),
    "ih": ("window", "ribbon", "kitten", "kitchen", "biscuit", "picnic", "lizard", "timber", "whistle", "chicken"),
    "ah": ("rocket", "pocket", "cotton", "lobster", "monster", "blossom", "hospital"),
    "uh": ("bucket", "muffin", "trumpet", "bubble"),
    "ee": ("needle", "eagle", "meeting", "teacher", "season"),
    "ay": ("table", "paper", "bacon", "cradle", "razor", "sailor", "raven", "painter", "crayon", "station"),
    "eye": ("spider", "diamond", "bicycle", "violin"),
    "oh": ("ocean", "motor", "robot", "photo", "toaster", "soldier", "polar"),
    "oo": ("noodle", "rooster", "scooter", "ruby", "balloon", "igloo"),
    "ow": ("mountain", "tower", "fountain", "cowboy"),
    "er": ("circus", "turkey", "burger", "person", "sermon", "furnace", "journal"),
    "ar": ("garden", "market", "carpet", "garlic", "marble", "parcel", "artist", "farmer", "guitar"),
}

#: Urdu challenge words (common nouns), grouped by first letter only.
_UR_WORDS: Final[Mapping[str, tuple[str, ...]]] = {
    "a": ("انار", "آم", "انگور"),
    "b": ("بادل", "بارش", "برف", "بلی"),
    "p": ("پہاڑ", "پھول", "پیاز"),
    "t": ("تکیہ", "تربوز"),
    "ch": ("چاند", "چابی", "چائے", "چاندی"),
    "d": ("دریا", "درخت", "دودھ", "دروازہ"),
    "r": ("روٹی",),
    "z": ("زمین",),
    "s": ("سیب", "ستارہ", "سمندر"),
    "sh": ("شیر", "شہد"),
    "q": ("قلم",),
    "k": ("کتاب", "کشتی", "کرسی", "کیلا", "کھڑکی"),
    "g": ("گھوڑا", "گلاب", "گھڑی"),
    "l": ("لالٹین", "لوہا"),
    "m": ("مچھلی", "مور", "میز", "مرچ"),
    "n": ("نمک",),
    "h": ("ہاتھی", "ہوا"),
    "j": ("جنگل",),
}

CHALLENGE_WORDS: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {"en": _EN_WORDS, "ur": _UR_WORDS}

_MONTHS: Final[Mapping[str, tuple[str, ...]]] = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "ur": ("جنوری", "فروری", "مارچ", "اپریل", "مئی", "جون", "جولائی", "اگست", "ستمبر", "اکتوبر", "نومبر", "دسمبر"),
}

_LANGUAGE_NAMES: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {"en": "English", "ur": "Urdu", "ar": "Arabic", "fr": "French", "de": "German", "es": "Spanish",
           "fa": "Persian", "hi": "Hindi", "ru": "Russian", "tr": "Turkish", "zh": "Chinese"},
    "ur": {"en": "انگریزی", "ur": "اردو", "ar": "عربی", "fa": "فارسی", "hi": "ہندی"},
}


@dataclass(frozen=True)
class _Template:
    """The sentences of a consent script in one language; `{…}` fields are filled in by `consent_script`."""

    body: str
    per_statement: str
    per_statement_delegates: str
    blanket: str
    revocable: str
    challenge: str
    renewal: str
    list_sep: str
    last_sep: str
    word_sep: str
    purposes: tuple[str, str]  # (one item, several items)
    channels: tuple[str, str]
    languages: tuple[str, str]
    delegate_word: tuple[str, str]


_TEMPLATES: Final[Mapping[str, _Template]] = {
    "en": _Template(
        body=("My name is {owner}. I consent to {organisation} publishing statements {approval}, using a synthetic "
              "copy of my voice that is clearly marked as artificial intelligence. {purposes} {channels} {languages} "
              "This consent lasts until {until}."),
        per_statement="approved by me, one by one",
        per_statement_delegates="approved by me or by my {delegate_word} {delegates}, one by one",
        blanket="within the scope below, without approving each one",
        revocable="I can revoke this consent at any time.",
        challenge="My challenge words are: {words}.",
        renewal="This renews my earlier consent for this voice on these terms.",
        list_sep=", ",
        last_sep=" and ",
        word_sep=", ",
        purposes=("The purpose is {items}.", "The purposes are {items}."),
        channels=("The channel is {items}.", "The channels are {items}."),
        languages=("The language is {items}.", "The languages are {items}."),
        delegate_word=("delegate", "delegates"),
    ),
    # Written for a native speaker to check; the verbs are kept gender-neutral on purpose.
    "ur": _Template(
        body=("میرا نام {owner} ہے۔ میری رضامندی ہے کہ {organisation} میری آواز کی مصنوعی نقل میں، جس پر واضح طور پر "
              "لکھا ہو کہ یہ مصنوعی ذہانت سے بنی ہے، وہ بیانات شائع کرے {approval}۔ {purposes} {channels} {languages} "
              "یہ رضامندی {until} تک ہے۔"),
        per_statement="جنہیں میں ایک ایک کر کے منظور کروں",
        per_statement_delegates="جنہیں میں یا {delegate_word} {delegates} ایک ایک کر کے منظور کریں",
        blanket="جو اس دائرۂ کار کے اندر ہوں",
        revocable="یہ رضامندی کسی بھی وقت واپس لی جا سکتی ہے۔",
        challenge="میرے چیلنج کے الفاظ یہ ہیں: {words}۔",
        renewal="یہ اس آواز کے لیے میری پچھلی رضامندی کی انہی شرائط پر تجدید ہے۔",
        list_sep="، ",
        last_sep=" اور ",
        word_sep="، ",
        purposes=("مقصد: {items}۔", "مقاصد: {items}۔"),
        channels=("ذریعہ: {items}۔", "ذرائع: {items}۔"),
        languages=("زبان: {items}۔", "زبانیں: {items}۔"),
        delegate_word=("میرا نامزد نمائندہ", "میرے نامزد نمائندے"),
    ),
}

SCRIPT_LANGUAGES: Final = frozenset(_TEMPLATES)


def base_language(tag: str) -> str:
    """`en-GB` → `en`: templates and word lists are per language, not per region."""
    return tag.replace("_", "-").split("-", 1)[0].lower()


def _template(language: str) -> _Template:
    try:
        return _TEMPLATES[base_language(language)]
    except KeyError:
        raise InputError(
            f"There is no consent script template for language {language!r} (available: "
            f"{', '.join(sorted(SCRIPT_LANGUAGES))}); choose one of those with --language."
        ) from None


def challenge_phrase(rng: random.Random, language: str = "en", count: int = CHALLENGE_WORD_COUNT) -> tuple[str, ...]:
    """`count` random words, each from a different sound group and with a different first letter.

    Pass a `random.SystemRandom` in production; a seeded `random.Random` in tests.
    """
    _template(language)
    groups = CHALLENGE_WORDS[base_language(language)]
    if count < 1 or count > len(groups):
        raise InputError(f"A challenge phrase has 1 to {len(groups)} words, not {count}.")
    words: list[str] = []
    for group in rng.sample(sorted(groups), len(groups)):  # every group, in random order, until there are enough
        choices = [w for w in groups[group] if w[0] not in {x[0] for x in words}]
        if choices:  # a group whose words all start with a letter already used is passed over
            words.append(rng.choice(choices))
        if len(words) == count:
            return tuple(words)
    raise InputError(f"Could not draw {count} challenge words with different first letters in {language!r}.")


def speakable(value: str) -> str:
    """A scope value as words: `public-statement` → `public statement`."""
    return " ".join(value.replace("-", " ").replace("_", " ").split())


def _join(items: Sequence[str], t: _Template) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return t.list_sep.join(items[:-1]) + t.last_sep + items[-1]


def spoken_date(day: date, language: str = "en") -> str:
    """The end date as the owner says it: `December 31, 2030`."""
    month = _MONTHS[base_language(language)][day.month - 1]
    if base_language(language) == "en":
        return f"{month} {day.day}, {day.year}"
    return f"{day.day} {month} {day.year}"


def language_name(code: str, language: str = "en") -> str:
    names = _LANGUAGE_NAMES.get(base_language(language), {})
    return names.get(base_language(code), code)


def delegates_of(terms: Consent) -> list[str]:
    """The named delegates: the approvers other than the owner's own account."""
    return sorted(terms.approvers - ({terms.owner_account} if terms.owner_account else set()))


def consent_script(terms: Consent, challenge: Sequence[str] | None, language: str = "en") -> str:
    """The exact words the owner reads: owner, organisation, scope, end date, then the challenge phrase.

    With `challenge=None` it is a written renewal of the terms (no challenge).
    """
    t = _template(language)
    delegates = [speakable(d) for d in delegates_of(terms)]
    if terms.policy is ApprovalPolicyKind.PER_STATEMENT:
        approval = (t.per_statement_delegates.format(delegates=_join(delegates, t),
                                                     delegate_word=t.delegate_word[len(delegates) > 1])
                    if delegates else t.per_statement)
    else:
        approval = t.blanket

    def sentence(forms: tuple[str, str], items: list[str]) -> str:
        return forms[len(items) > 1].format(items=_join(items, t))

    body = t.body.format(
        owner=terms.owner,
        organisation=terms.organisation,
        approval=approval,
        purposes=sentence(t.purposes, [speakable(p) for p in sorted(terms.scope.purposes)]),
        channels=sentence(t.channels, [speakable(c) for c in sorted(terms.scope.channels)]),
        languages=sentence(t.languages, [language_name(x, language) for x in sorted(terms.scope.languages)]),
        until=spoken_date(terms.valid_until.date(), language),
    )
    tail = t.renewal if challenge is None else t.challenge.format(words=t.word_sep.join(challenge))
    return f"{body} {t.revocable} {tail}"


def required_names(terms: Consent) -> list[str]:
    """The names the recogniser must hear: the owner's, in full.

    Delegates are named in the script (and counted in its word error rate) by
    their user accounts, which are handles rather than names: "ann" is heard as
    "and". Requiring them word for word would refuse honest readings.
    """
    return [terms.owner]
