"""A sentence as a message key and its parameters, rendered in any catalogue language when it is read.

The verdict's reasons are built this way (issue 13): `voxgate verify --json` keeps its English
`reasons` and adds `reason_keys` (the same messages as data); the public verify page renders
them in the reader's language. A parameter is a number or a code (a clip id, a format name), a
nested `Message` (a part of a sentence that is itself translated), or a `Listing` of either,
joined the way the language joins lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Union

from pipeline.i18n import DEFAULT_LANGUAGE, t

#: How a `Listing` is joined; each is a pair of catalogue keys (between items, before the last item).
JOINS: Final = {
    "and": ("list.comma", "list.and"),  # a, b and c
    "comma": ("list.comma", "list.comma"),  # a, b, c
    "semicolon": ("list.semicolon", "list.semicolon"),  # a; b; c
}

Param = Union[int, float, str, "Message", "Listing"]


@dataclass(frozen=True)
class Message:
    """One translatable sentence (or part of one): `key` in the catalogues, filled with `params`."""

    key: str
    params: tuple[tuple[str, Param], ...] = ()

    def text(self, lang: str = DEFAULT_LANGUAGE) -> str:
        return t(lang, self.key, **{name: _render(value, lang) for name, value in self.params})

    def keys(self) -> set[str]:
        """Every catalogue key this message uses, nested ones and list joins included."""
        found = {self.key}
        for _, value in self.params:
            found |= _keys(value)
        return found

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: {"key": …, "params": {…}}; a nested message is the same shape, a listing {"list", "join"}."""
        return {"key": self.key, "params": {name: _to_json(value) for name, value in self.params}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Message:
        return cls(str(raw["key"]), tuple((name, _from_json(value)) for name, value in raw.get("params", {}).items()))


@dataclass(frozen=True)
class Listing:
    """Items joined as the language joins a list (`JOINS`)."""

    items: tuple[Param, ...]
    join: str = "and"

    def __post_init__(self) -> None:
        if self.join not in JOINS:
            raise ValueError(f"unknown join {self.join!r}; use one of {sorted(JOINS)}")


def msg(key: str, **params: Param) -> Message:
    return Message(key, tuple(params.items()))


def _render(value: Param, lang: str) -> Any:
    if isinstance(value, Message):
        return value.text(lang)
    if isinstance(value, Listing):
        parts = [str(_render(item, lang)) for item in value.items]
        between, last = (t(lang, key) for key in JOINS[value.join])
        return between.join(parts[:-1]) + last + parts[-1] if len(parts) > 1 else "".join(parts)
    return value  # numbers stay numbers, so the catalogue's format specs ({share:.0%}) apply


def _keys(value: Param) -> set[str]:
    if isinstance(value, Message):
        return value.keys()
    if isinstance(value, Listing):
        found = set(JOINS[value.join])
        for item in value.items:
            found |= _keys(item)
        return found
    return set()


def _to_json(value: Param) -> Any:
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, Listing):
        return {"list": [_to_json(item) for item in value.items], "join": value.join}
    return value


def _from_json(value: Any) -> Param:
    if isinstance(value, dict) and "key" in value:
        return Message.from_dict(value)
    if isinstance(value, dict) and "list" in value:
        return Listing(tuple(_from_json(item) for item in value["list"]), str(value.get("join", "and")))
    return value


__all__ = ["JOINS", "Listing", "Message", "msg"]
