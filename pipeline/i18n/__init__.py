"""One set of message catalogues for the portal and the public verify page: English and Urdu.

`t(lang, key, **kw)` looks a message up (falling back to English, then to the key itself) and
fills its `{placeholders}`. `choose_language` picks the page language from `?lang=`, the `lang`
cookie, then the browser's Accept-Language. Verdict codes stay English in JSON; only what a
person reads is translated.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Final

LANGUAGES: Final = ("en", "ur")
DEFAULT_LANGUAGE: Final = "en"
RTL_LANGUAGES: Final = frozenset({"ur", "ar", "fa", "ps", "sd"})
LANGUAGE_NAMES: Final = {"en": "English", "ur": "اردو"}
COOKIE: Final = "lang"


@cache
def catalogue(lang: str) -> dict[str, str]:
    return json.loads((resources.files(__package__) / f"{lang}.json").read_text(encoding="utf-8"))


def t(lang: str, key: str, **kw: object) -> str:
    """The message `key` in `lang` (English if missing there; the key itself if missing everywhere)."""
    lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    text = catalogue(lang).get(key) or catalogue(DEFAULT_LANGUAGE).get(key) or key
    return text.format(**kw) if kw else text


def has(lang: str, key: str) -> bool:
    return key in catalogue(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)


def direction(lang: str) -> str:
    return "rtl" if lang in RTL_LANGUAGES else "ltr"


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """`?lang=` first, then the cookie, then the best Accept-Language match we speak, else English."""
    for explicit in (query, cookie):
        if explicit and explicit.lower() in LANGUAGES:
            return explicit.lower()
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE
