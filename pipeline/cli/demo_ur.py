"""`voxgate demo --lang ur`: the whole flow in Urdu, offline, on espeak-ng's robotic Urdu voice.

No neural Urdu voice can be installed here (Piper's ur_PK voices and MMS-TTS
live on an unreachable model hub; XTTS-v2 does not speak Urdu), so the
fictional owner's demo voice is espeak-ng's Urdu, named as a robotic demo
voice. Its announcer is a different espeak-ng variant (never the same voice).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Final

from pipeline.hashing import sha256_file

OWNER: Final = "زینب مثال"  # fictional: "Zainab Example"
VOICE_ID: Final = "demo-ur"
VOICE_NAME: Final = "Zainab Example (robotic espeak-ng Urdu demo voice)"
VALID_FROM: Final = date(2026, 1, 1)
VALID_UNTIL: Final = date(2030, 12, 31)
PURPOSES: Final = ("public-statement", "press-release")
CHANNELS: Final = ("social", "messaging", "press")
APPROVERS: Final = ("zainab-delegate",)


def consent_statement(voice_id: str, organisation: str, approvers: tuple[str, ...] = APPROVERS) -> str:
    """The Urdu consent script the owner reads (the project's Urdu template), without a challenge phrase."""
    from pipeline.consent.script import consent_script
    from pipeline.domain import ApprovalPolicyKind, Consent, Scope

    terms = Consent(
        voice_id=voice_id, owner=OWNER, organisation=organisation,
        scope=Scope(frozenset(PURPOSES), frozenset(CHANNELS), frozenset({"ur"})),
        valid_from=datetime(VALID_FROM.year, 1, 1, tzinfo=timezone.utc),
        valid_until=datetime(VALID_UNTIL.year, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
        policy=ApprovalPolicyKind.PER_STATEMENT, approvers=frozenset(approvers), statement="",
    )
    return consent_script(terms, None, "ur")


def write_espeak_profile(folder: Path, *, voice_id: str = VOICE_ID, organisation: str, variant: str | None = None,
                         approvers: tuple[str, ...] = APPROVERS, reading: bool = False) -> Path:
    """A voice profile whose model is espeak-ng's Urdu (its dictionary pinned by sha256).

    With `reading`, espeak-ng also reads the consent statement into consent-reading.wav,
    standing in for the owner's recorded consent.
    """
    from pipeline.synth.espeak import EspeakVoice, dictionary

    folder.mkdir(parents=True, exist_ok=True)
    voice = EspeakVoice("ur", variant)
    (folder / "espeak.json").write_text(json.dumps(voice.to_dict()) + "\n", encoding="utf-8")
    ur_dict = dictionary("ur")
    statement = consent_statement(voice_id, organisation, approvers)
    toml_text = "\n".join([
        "# A robotic demo voice: espeak-ng's Urdu, for a fictional owner. A real profile points at the",
        "# model fine-tuned on the consenting speaker.",
        f'id = "{voice_id}"',
        f'name = "{VOICE_NAME}"',
        'languages = ["ur"]',
        "",
        "[model]",
        'engine = "espeak"',
        f'path = "{ur_dict}"',
        'config = "espeak.json"',
        f'sha256 = "{sha256_file(ur_dict)}"',
        "",
        "[consent]",
        f'owner = "{OWNER}"',
        f'organisation = "{_toml_escape(organisation)}"',
        f'statement = """{statement}"""',
        f"purposes = {json.dumps(list(PURPOSES))}",
        f"channels = {json.dumps(list(CHANNELS))}",
        'languages = ["ur"]',
        f"valid_from = {VALID_FROM.isoformat()}",
        f"valid_until = {VALID_UNTIL.isoformat()}",
        'policy = "per_statement"',
        f"approvers = {json.dumps(list(approvers))}",
        "",
    ])
    (folder / "voice.toml").write_text(toml_text, encoding="utf-8")
    if reading:
        import soundfile as sf

        from pipeline.synth.espeak import EspeakEngine
        from pipeline.synth.text import normalise_for_speech, split_sentences

        engine = EspeakEngine(voice)
        engine.load()
        import numpy as np

        parts = engine.synthesize([normalise_for_speech(x, "ur") for x in split_sentences(statement, "ur")])
        sf.write(folder / "consent-reading.wav", np.concatenate(parts), engine.sample_rate)
    return folder


def _toml_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
