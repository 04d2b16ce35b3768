"""Verdicts for a circulating clip: is it ours, unchanged, derived, revoked, leaked, or unknown?

`verdict` is the pure decision (evidence in, verdict out); `match` compares
a file's audio with a registered master. Gathering the evidence from a file
and the registry is `pipeline.services.verify`.
"""

from pipeline.verify.match import Block, ContentMatch, match_audio
from pipeline.verify.timeline import Timeline, localise
from pipeline.verify.verdict import (
    EXIT_CODES,
    ClipFacts,
    Evidence,
    Outcome,
    PayloadReading,
    Trace,
    Verdict,
    decide,
)

__all__ = [
    "Block",
    "Timeline",
    "localise",
    "EXIT_CODES",
    "ClipFacts",
    "ContentMatch",
    "Evidence",
    "Outcome",
    "PayloadReading",
    "Trace",
    "Verdict",
    "decide",
    "match_audio",
]
