"""`voxgate demo --lang ur`: the whole flow in Urdu, offline, on espeak-ng's robotic Urdu voice.

No neural Urdu voice can be installed here (Piper's ur_PK voices and MMS-TTS
live on an unreachable model hub; XTTS-v2 does not speak Urdu), so the
fictional owner's demo voice is espeak-ng's Urdu, named as a robotic demo
voice. Its announcer is a different espeak-ng variant (never the same voice).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final


OWNER: Final = "زینب مثال"  # fictional: "Zainab Example"
VOICE_ID: Final = "demo-ur"
VOICE_NAME: Final = "Zainab Example (robotic espeak-ng Urdu demo voice)"
VALID_FROM: Final = date(2026, 1, 1)
VALID_UNTIL: Final = date(2030, 12, 31)
PURPOSES: Final = ("public-statement", "press-release")
CHANNELS: Final = ("social", "messaging", "press")
APPROVERS: Final = ("zainab-delegate",)


def consent_statement(voice_id: str, organisation: str, approvers: tuple[str, ...] = APPROVERS) -> str:
    """The Urdu consent script the owner reads (the project's Urdu template), ending in a fresh challenge phrase."""
    from pipeline.consent.script import consent_script
    from pipeline.domain import ApprovalPolicyKind, Consent, Scope

    terms = Consent(
        voice_id=voice_id, owner=OWNER, organisation=organisation,
        scope=Scope(frozenset(PURPOSES), frozenset(CHANNELS), frozenset({"ur"})),
        valid_from=datetime(VALID_FROM.year, 1, 1, tzinfo=UTC),
        valid_until=datetime(VALID_UNTIL.year, 12, 31, 23, 59, 59, tzinfo=UTC),
        policy=ApprovalPolicyKind.PER_STATEMENT, approvers=frozenset(approvers), statement="",
    )
    import random

    from pipeline.consent.script import challenge_phrase

    return consent_script(terms, challenge_phrase(random.Random(), "ur"), "ur")


def write_espeak_profile(folder: Path, *, voice_id: str = VOICE_ID, organisation: str, variant: str | None = None,
                         approvers: tuple[str, ...] = APPROVERS, reading: bool = False) -> Path:
    """A voice profile whose model is espeak-ng's Urdu (its dictionary pinned by sha256).

    With `reading`, espeak-ng also reads the consent statement into consent-reading.wav,
    standing in for the owner's recorded consent.
    """
    from pipeline.synth.base import model_digest
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
        f'sha256 = "{model_digest(ur_dict, folder / "espeak.json")}"',  # the dictionary and the voice settings
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


ORGANISATION: Final = "آزاد آواز میڈیا (ڈیمو)"  # fictional: "Free Voice Media (demo)"
PEOPLE: Final = (("ops", "admin"), ("sam", "submitter"), ("rita", "reviewer"), ("ravi", "reviewer"),
                 ("zainab-delegate", "delegate"), ("dana", "distributor"))
STATEMENT: Final = (
    "میں خیریت سے ہوں اور ان سب کا شکریہ ادا کرتی ہوں جنہوں نے مجھے خط لکھے۔ "
    "میں نے 42 دن بعد ۱۲ مارچ 2025 کو اپنے وکیل کو خط لکھا۔ "
    "1,50,000 لوگوں نے درخواست پر دستخط کیے، اور 75% نے کھلی سماعت کا مطالبہ کیا۔ "
    "براہ کرم منصفانہ اور کھلے مقدمے کے لیے آواز اٹھاتے رہیں۔"
)
ROMAN_URDU: Final = "Main khairiyat se hoon aur aap sab ka shukriya ada karti hoon."


def run_demo_ur(home: str | None) -> None:
    """The Urdu flow, narrated: consent, statement, refusals, review, render, release, exports, verify."""
    import subprocess
    import tempfile
    import time

    from rich.rule import Rule

    from pipeline.cli.demo import DEMO_PASSPHRASE, _refused, _step
    from pipeline.identity.personal import PASSPHRASE_ENV, Keyring, env_passphrases
    from pipeline.cli.output import console
    from pipeline.domain import Decision
    from pipeline.errors import VoxgateError
    from pipeline.services import clips, review, statements, users, voices
    from pipeline.services.auditing import audit_verify
    from pipeline.cli.rendering import render_jobs
    from pipeline.services.job_worker import JobWorker
    from pipeline.services.tools import Tools
    from pipeline.services.verify import verify_file
    from pipeline.services.workspace import init_workspace, utcnow

    started = time.perf_counter()
    root = Path(home) if home else Path(tempfile.mkdtemp(prefix="voxgate-demo-ur-"))
    console.print(Rule("voxgate demo (اردو)"))
    ws, created = init_workspace(root, ORGANISATION, now=utcnow())
    if not created:
        raise VoxgateError(f"{root} already holds a workspace; the demo needs a fresh one (omit --home).")
    _step(f"workspace at {root}, organisation {ORGANISATION}")
    os.environ.setdefault(PASSPHRASE_ENV, DEMO_PASSPHRASE)
    keys = Path(tempfile.mkdtemp(prefix="voxgate-demo-keys-"))
    ws.keyring = Keyring(keys, env_passphrases(prompt=False))
    _step(f"people's own keys at {keys} (encrypted; passphrase from ${PASSPHRASE_ENV}); the workspace gets public keys only")
    for name, role in PEOPLE:
        users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    profile = write_espeak_profile(root / "profile-demo-ur", organisation=ORGANISATION, reading=True)
    _step("consent script the owner reads (Urdu):")
    console.print("  " + voices.parse_profile(profile).consent.statement, markup=False, highlight=False)
    _step(f"the reading: {profile / 'consent-reading.wav'} (espeak-ng standing in for the fictional owner {OWNER})")
    voice = voices.add_voice(ws, profile, actor="ops", now=utcnow())
    _step(f"voice {voice.id!r}: {voice.name}; engine {voice.engine}, dictionary sha256 {voice.model_sha256[:12]}")

    for text, why in ((ROMAN_URDU, "Roman Urdu"), ("Zubair نے خط لکھا۔", "a Latin word without an Urdu spelling")):
        try:
            statements.submit(ws, voice_id=VOICE_ID, purpose="public-statement", channel="social", language="ur",
                              text=text, actor="sam", now=utcnow())
        except VoxgateError as exc:
            _refused(why, exc)
    row = statements.submit(ws, voice_id=VOICE_ID, purpose="public-statement", channel="messaging", language="ur",
                            text=STATEMENT, actor="sam", now=utcnow())
    sid = row.id
    _step(f"sam submitted statement {sid} in Urdu (numbers, a date and a percentage in it)")
    from pipeline.synth.text import normalise_for_speech, split_sentences

    for sentence in split_sentences(STATEMENT, "ur")[1:3]:
        _step(f"  spoken as: {normalise_for_speech(sentence, 'ur')}")
    review.decide(ws, sid, Decision.APPROVE, comment="متن وکیل کے خط سے ملا لیا", actor="rita", now=utcnow())
    row = review.decide(ws, sid, Decision.APPROVE, actor="zainab-delegate", now=utcnow())
    _step(f"text approved by rita and zainab-delegate → {row.state}")

    tools = Tools()
    with JobWorker(ws, tools, queues=("render",)):  # a render job, run in this process as `voxgate render` does
        results, failures, _taken = render_jobs(ws, [sid], "rita")
    if failures:
        raise failures[0][1]
    result = results[0]
    f = result.figures
    _step(f"rendered clip {result.clip_id}: {f['duration_s']:.1f} s, {f['integrated_lufs']:.1f} LUFS; "
          f"disclosure by {f['announcer']}; recogniser: {f['asr']}")
    try:
        review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())
    except VoxgateError as exc:
        _refused("audio approval without listening, where no recogniser covers Urdu", exc)
    row = review.decide(ws, sid, Decision.APPROVE, comment="پورا سنا", listened=True, actor="ravi", now=utcnow())
    _step(f"ravi listened to the whole draft and approved it → {row.state}")

    out = root / "exports"
    out.mkdir(exist_ok=True)
    note = clips.export_clip(ws, result.clip_id, "ogg", out, actor="dana", now=utcnow())
    video = clips.export_clip(ws, result.clip_id, "mp4-vertical", out, actor="dana", now=utcnow())
    _step(f"dana exported the Opus voice note {note.name} and the vertical video {video.name} (Nastaliq captions)")
    forwarded = out / "forwarded-voice-note.ogg"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(note), "-c:a", "libopus", "-b:a", "24k", "-ac", "1",
                    str(forwarded)], check=True)
    verdict = verify_file(ws, forwarded, now=utcnow(), presence=tools.presence_mark()).verdict
    _step(f"anyone verifies {forwarded.name}: {verdict.outcome.value} (clip {verdict.clip_id}) — {verdict.reasons[0]}")
    report = audit_verify(ws)
    _step(f"audit log: {'OK' if report.ok else 'BROKEN: ' + report.problem}, {report.events} events")
    console.print(f"Urdu demo finished in {time.perf_counter() - started:.1f} s; workspace kept at {root}")
