"""Texts of the audible disclosure spoken before (or after) a clip.

Pure text: the caller synthesises it with the neutral announcer voice, never
with the consenting voice, so the disclosure cannot be mistaken for the owner.
A workspace overrides or adds languages under ``[render.disclosure_texts]``
in voxgate.toml; the built-ins below are used otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from pipeline.errors import InputError

DEFAULT_DISCLOSURE_TEMPLATES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "en": (
            "The following message is an AI-generated voice, made with the consent of {owner}, "
            "published by {organisation}."
        ),
        "ur": (
            "درج ذیل پیغام مصنوعی ذہانت سے بنائی گئی آواز میں ہے، جو {owner} کی رضامندی سے تیار کی گئی ہے۔ "
            "یہ پیغام {organisation} نے شائع کیا ہے۔"
        ),
    }
)


def disclosure_text(
    lang: str, *, owner: str, organisation: str, templates: Mapping[str, str] | None = None
) -> str:
    """Return the disclosure for `lang`; `templates` (from config) win over the built-ins.

    `lang` may carry a region (``en-GB``, ``ur_PK``): the primary subtag picks the template.
    """
    merged = {**DEFAULT_DISCLOSURE_TEMPLATES, **(templates or {})}
    primary = lang.replace("_", "-").split("-", 1)[0].lower()
    template = merged.get(lang) or merged.get(primary)
    if template is None:
        raise InputError(
            f"No audible disclosure text for language {lang!r}; add "
            f'{primary} = "… {{owner}} … {{organisation}} …" under [render.disclosure_texts] in voxgate.toml, '
            "or set render.disclosure = \"none\" if a spoken disclosure is not wanted."
        )
    try:
        return template.format(owner=owner, organisation=organisation)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"Disclosure template for {lang!r} is invalid ({exc}); it may use only {{owner}} and {{organisation}}."
        ) from exc
