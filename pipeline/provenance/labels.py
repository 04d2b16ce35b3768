"""The AI-voice label every exported clip carries as metadata tags.

Pure data: the exporter writes `ClipLabels.as_tags()` (ffmpeg ``-metadata``
for WAV INFO and Ogg, its own ID3v2.4 tag for MP3 and the WAV ``id3 `` chunk)
and reads the file back to prove the label is there. Where each key lands:

=================  ===========================  ======================  ================
key                WAV                          MP3 (ID3v2.4)           Ogg Opus
=================  ===========================  ======================  ================
title              INFO INAM + ID3 TIT2         TIT2                    TITLE
artist             INFO IART + ID3 TPE1         TPE1                    ARTIST
comment            INFO ICMT + ID3 COMM         COMM                    DESCRIPTION
copyright          INFO ICOP + ID3 TCOP         TCOP                    COPYRIGHT
date               INFO ICRD + ID3 TDRC         TDRC                    DATE
publisher          ID3 TPUB                     TPUB                    PUBLISHER
AI_GENERATED,      ID3 TXXX only                TXXX                    same key
LABEL, VOXGATE_*
=================  ===========================  ======================  ================

WAV INFO chunks only hold the fixed four-letter fields, so the machine-readable
keys (`AI_GENERATED`, `VOXGATE_CLIP_ID`, ...) travel in WAV's ``id3 `` chunk.
Vorbis comment names are case-insensitive (ffmpeg writes them as given, and
renames `comment` to DESCRIPTION). The language goes in `VOXGATE_LANGUAGE`, not ID3's TLAN, which wants ISO 639-2
codes where we hold BCP 47 tags.
Tags are a label, not proof: anyone can strip or forge them. The watermark
and content credentials are what `voxgate verify` trusts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

from pipeline.errors import ProvenanceError

#: Filled with `owner` and `organisation` by `ai_notice()`; callers may pass their own wording.
AI_NOTICE_TEMPLATE: Final = (
    "AI-generated voice. Synthetic speech made with the consent of {owner}, published by {organisation}."
)
#: The same notice in the clip's own language (tags, content credentials), beside the English one.
AI_NOTICE_TEMPLATES: Final = {
    "en": AI_NOTICE_TEMPLATE,
    "ur": "مصنوعی ذہانت سے تیار کردہ آواز۔ یہ مصنوعی آواز {owner} کی رضامندی سے بنائی گئی ہے اور {organisation} نے شائع کی ہے۔",
}
DEFAULT_REGISTRY_HINT: Final = "Registered in the publisher's voxgate registry under the clip id."

#: The keys whose presence (and value) the exporter checks after writing.
AI_GENERATED_TAG: Final = "AI_GENERATED"
CLIP_ID_TAG: Final = "VOXGATE_CLIP_ID"
LABEL_TAG: Final = "LABEL"


def ai_notice(*, owner: str, organisation: str, template: str = AI_NOTICE_TEMPLATE) -> str:
    """Fill the AI notice template; a template with an unknown placeholder is a config error."""
    try:
        return template.format(owner=owner, organisation=organisation)
    except (KeyError, IndexError, ValueError) as exc:
        raise ProvenanceError(
            f"AI notice template {template!r} is invalid ({exc}); use only {{owner}} and {{organisation}}."
        ) from exc


def ai_notices(language: str, *, owner: str, organisation: str) -> dict[str, str]:
    """The AI notice in English and, where a template exists, in the clip's language: {"en": …, "ur": …}."""
    primary = language.replace("_", "-").split("-", 1)[0].lower()
    notices = {"en": ai_notice(owner=owner, organisation=organisation)}
    if primary in AI_NOTICE_TEMPLATES and primary != "en":
        notices[primary] = ai_notice(owner=owner, organisation=organisation, template=AI_NOTICE_TEMPLATES[primary])
    return notices


@dataclass(frozen=True)
class ClipLabels:
    """What a clip says about itself: who, for whom, that it is synthetic, how to check it."""

    clip_id: str
    statement_id: int
    voice_id: str
    voice_name: str
    organisation: str
    language: str
    ai_notice: str
    created_at: str  # ISO 8601, with offset
    registry_hint: str = DEFAULT_REGISTRY_HINT
    local_notice: str = ""  # the AI notice in the clip's language, when that is not English (LABEL_UR, …)

    def __post_init__(self) -> None:
        for name in ("clip_id", "voice_id", "voice_name", "organisation", "language", "ai_notice"):
            if not getattr(self, name).strip():
                raise ProvenanceError(f"Clip label field {name!r} is empty; a clip cannot be labelled without it.")
        for name, value in vars(self).items():
            if isinstance(value, str) and "\0" in value:  # cannot pass through ffmpeg's argv or ID3 text
                raise ProvenanceError(f"Clip label field {name!r} contains a NUL character.")
        try:
            created = datetime.fromisoformat(self.created_at)
        except ValueError as exc:
            raise ProvenanceError(f"Clip label created_at {self.created_at!r} is not ISO 8601.") from exc
        if created.utcoffset() is None:
            raise ProvenanceError(f"Clip label created_at {self.created_at!r} has no UTC offset; pass an aware time.")

    def as_tags(self) -> dict[str, str]:
        """Tags named as ffmpeg and ffprobe name them: keys players show, then machine-readable ones."""
        return {
            "title": f"Statement {self.statement_id} — {self.voice_name} (AI-generated voice)",
            "artist": f"{self.voice_name} (AI-generated voice)",
            "comment": " ".join(filter(None, (self.ai_notice, self.local_notice, self.registry_hint))),
            "copyright": self.organisation,
            "publisher": self.organisation,
            # ID3v2.4 timestamps are UTC without an offset; the other containers take them too.
            "date": datetime.fromisoformat(self.created_at).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            AI_GENERATED_TAG: "true",
            LABEL_TAG: self.ai_notice,
            CLIP_ID_TAG: self.clip_id,
            "VOXGATE_STATEMENT": str(self.statement_id),
            "VOXGATE_VOICE": self.voice_id,
            "VOXGATE_LANGUAGE": self.language,
            "VOXGATE_VERIFY": self.registry_hint,
            **({f"{LABEL_TAG}_{self.language.split('-')[0].upper()}": self.local_notice} if self.local_notice else {}),
        }
