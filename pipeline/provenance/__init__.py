"""Marks and labels that make a clip recognisably synthetic and traceable to us."""

from pipeline.provenance.disclosure import DEFAULT_DISCLOSURE_TEMPLATES, disclosure_text
from pipeline.provenance.labels import AI_NOTICE_TEMPLATE, ClipLabels, ai_notice
from pipeline.provenance.presence import DEFAULT_EMBED_THRESHOLD, DEFAULT_PRESENCE_THRESHOLD, PresenceMark

__all__ = [
    "AI_NOTICE_TEMPLATE",
    "DEFAULT_DISCLOSURE_TEMPLATES",
    "DEFAULT_EMBED_THRESHOLD",
    "DEFAULT_PRESENCE_THRESHOLD",
    "ClipLabels",
    "PresenceMark",
    "ai_notice",
    "disclosure_text",
]
