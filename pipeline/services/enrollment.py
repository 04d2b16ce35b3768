"""Enrollment: the owner's spoken consent, checked, signed and kept, with the recordings it covers.

    voxgate voice enroll VOICE …     check the owner's reading of the script against the recordings; record the consent

The script comes from `consent_scripts`, the recordings from `recordings`;
renewal and the certificate live in `consent_renewal` and `consent_certificate`.
An enrollment runs every check before it writes anything, so a refusal leaves
the store unchanged. The consent audio and the recordings are copied into
`<home>/voices/<id>/enrollments/<script id>/`; the record stores the sha256 of each.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
from sqlalchemy import select

from pipeline.consent.checks import (
    Check,
    CheckConfig,
    CheckTools,
    audio_checks,
    audio_figures,
    cosine,
    measured_checks,
    speaker_checks,
    speech_checks,
    transcribe,
)
from pipeline.consent.script import required_names
from pipeline.domain import Consent, ConsentKind, Role, SignerCapacity, VoiceState
from pipeline.errors import ConsentError, InputError, StoreError
from pipeline.hashing import sha256_file
from pipeline.services.consent_scripts import pending_script, script_terms
from pipeline.services.consent_terms import require_same_owner
from pipeline.services.liveness import machine_checks
from pipeline.services.recordings import RecordingSource, earlier_recordings, load_any, load_wav, read_recordings
from pipeline.services.voices import add_consent_row
from pipeline.services.workspace import Workspace
from pipeline.settings import CONFIG_FILE
from pipeline.store.files import atomic_copy, make_private
from pipeline.store.models import ConsentScriptRow, EnrollmentRow, RecordingRow, VoiceRow

NO_ENGINE: Final = "none"  # the engine of a voice enrolled before any model exists
_ASR_NAME: Final = "whisper tiny.en"


@dataclass(frozen=True)
class EnrollmentResult:
    voice_id: str
    voice_state: str
    created_voice: bool
    consent_id: int
    enrollment_id: int
    record_sha256: str
    checks: tuple[Check, ...]
    recordings: int
    recordings_s: float
    signers: tuple[str, ...]
    elapsed_s: float



_HINTS: Final = {
    "AI presence watermark": "synthesised speech cannot give consent; the owner must read the script aloud themselves",
    "payload mark": "one of this workspace's own clips cannot give consent; the owner must read the script aloud",
    "registered clip": "one of this workspace's own clips cannot give consent; the owner must read the script aloud",
    "consent audio": "record the owner reading the script again",
    "earlier enrollment": "the consent audio does not sound like the person this voice was enrolled with; "
                          "a voice's owner never changes",
    "speaker similarity": "the consent audio and the training recordings do not sound like the same person; "
                          "both must be recorded by the owner",
    "least similar recording": "that recording does not sound like the person in the consent audio; remove it "
                               "or record it again with the owner",
    "heard": "the owner must read the whole script as printed, in one recording",
    "error rate": "the reading does not match the script; the owner must read it as printed",
}


def _refuse(check: Check) -> ConsentError:
    hint = next((h for key, h in _HINTS.items() if key in check.name), "record it again")
    return ConsentError(f"Enrollment refused: {check.name} {check.detail} (needs {check.limit}); {hint}.")


def _require(checks: Sequence[Check]) -> None:
    for check in checks:
        if not check.passed:
            raise _refuse(check)


def check_config(ws: Workspace) -> CheckConfig:
    """The `[enrollment]` section of voxgate.toml, defaults otherwise."""
    try:
        raw = tomllib.loads((ws.home / CONFIG_FILE).read_text(encoding="utf-8")).get("enrollment", {})
    except (OSError, tomllib.TOMLDecodeError):
        raw = {}
    return CheckConfig.from_dict(raw, where=f"{CONFIG_FILE} [enrollment]")


def _new_state(voice: VoiceRow) -> str:
    """A re-enrolled voice: a profile voice speaks again; a trained model must pass its test again."""
    if voice.state != VoiceState.REVOKED.value:
        return voice.state
    if not voice.model_sha256 or voice.engine == NO_ENGINE:
        return VoiceState.ENROLLED.value
    return VoiceState.READY.value if voice.profile_sha256 else VoiceState.TRAINED.value


def enroll(ws: Workspace, voice_id: str, recordings_dir: Path, consent_audio: Path, *, actor: str | None,
           now: datetime, confirmed_by_operator: bool = False, script_id: int | None = None,
           tools: CheckTools | None = None, config: CheckConfig | None = None) -> EnrollmentResult:
    """Check the owner's reading of the pending script and the training recordings; record the signed consent.

    Audio checks, then speaker similarity, then speech recognition. Every check
    runs before anything is written; the first that fails refuses the enrollment
    with its figure, and the store is unchanged.
    """
    started = time.perf_counter()
    cfg = config or check_config(ws)
    tools = tools or CheckTools()
    with ws.sessions() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        script = pending_script(s, voice_id, script_id, now)
        voice = s.get(VoiceRow, voice_id)
        if voice is not None and not set(script.languages) <= set(voice.languages):
            raise InputError(f"Voice {voice_id!r} speaks {', '.join(voice.languages)}; the script covers "
                             f"{', '.join(script.languages)}. Print a script for the voice's languages.")
        if script.organisation != ws.config.organisation:
            raise ConsentError(f"Script {script.id} names {script.organisation!r}, not this workspace's organisation.")
        require_same_owner(s, voice_id, script.owner)
        earlier = earlier_recordings(ws, s, voice_id)
        terms = script_terms(script, now)
        s.expunge(script)
    from pipeline.quality.recognisers import BUILTIN, check_pinned, recogniser_for

    spec = recogniser_for(script.language, ws.config.recognisers)
    if spec is not None and confirmed_by_operator:
        raise InputError(f"--confirmed-by-operator is only for languages no recogniser covers; {script.language!r} "
                         f"consent audio is checked by speech recognition ({spec.name}).")
    if spec is None and not confirmed_by_operator:
        raise ConsentError(f"No speech recogniser covers {script.language!r} (none bundled, none in voxgate.toml "
                           "[recognisers]): listen to the consent audio against the script (names, organisation, end "
                           "date, challenge words) and, if it matches, enroll again with --confirmed-by-operator.")
    if spec is not None:
        check_pinned(spec)  # a configured model folder must be the pinned one before anything is checked
    if not consent_audio.is_file():
        raise InputError(f"No file {consent_audio}; --consent-audio takes the recording of the owner reading the script.")
    sources = read_recordings(recordings_dir)
    consent_sha = sha256_file(consent_audio)
    with ws.sessions() as s:
        used_by = s.scalars(select(EnrollmentRow.id).where(EnrollmentRow.consent_audio_sha256 == consent_sha)).first()
    if used_by is not None:
        raise ConsentError(f"This consent recording was already used by enrollment {used_by}; the owner must read "
                           "the new script aloud.")

    # How it was recorded.
    consent_x, consent_sr = load_any(consent_audio)
    checks: list[Check] = audio_checks("consent audio", audio_figures(consent_x, consent_sr), consent=True, cfg=cfg)
    _require(checks)
    # Who made it: a person, not a voice generator (nor one of our own clips played back).
    machine = machine_checks(ws, consent_x, consent_sr, tools.presence())
    checks.extend(machine)
    _require(machine)
    loaded: list[tuple[RecordingSource, np.ndarray, int, str]] = []
    total_s = 0.0
    for src in sources:
        x, sr = load_wav(src.path)
        figures = audio_figures(x, sr)
        _require(audio_checks(f"recording {src.name}", figures, consent=False, cfg=cfg))
        total_s += figures.duration_s
        loaded.append((src, x, sr, sha256_file(src.path)))
    checks.append(Check(f"recordings ({len(loaded)} files) audio", True, round(total_s, 1), "every file passes",
                        f"{len(loaded)} files, {total_s:.1f} s"))
    total = Check("recordings total duration", total_s >= cfg.min_recordings_total_s, round(total_s, 1),
                  f">= {cfg.min_recordings_total_s:g} s", f"{total_s:.1f} s")
    checks.append(total)
    _require([total])

    # Who said it (before the words: cheaper, and the more telling refusal for a stranger).
    encoder = tools.speaker()
    consent_emb = encoder.embed(consent_x, consent_sr)
    embeddings = [(src.name, encoder.embed(x, sr)) for src, x, sr, _ in loaded]
    speaker = list(speaker_checks(consent_emb, embeddings, cfg))
    if earlier:  # the voice was enrolled before (its model may rest on that): it must be the same person
        try:
            before = np.mean([encoder.embed(*load_wav(path)) for path in earlier], axis=0)
        except InputError as exc:
            raise StoreError(f"An earlier enrollment's recording is unreadable ({exc}); restore the workspace's "
                             f"voices/{voice_id} folder from a backup.") from exc
        figure = round(cosine(consent_emb, before), 3)
        speaker.append(Check("speaker similarity to the earlier enrollment", figure >= cfg.min_speaker_similarity,
                             figure, f">= {cfg.min_speaker_similarity}", f"{figure:.3f}"))
    checks.extend(speaker)
    _require(speaker)
    similarity = {name: round(cosine(consent_emb, e), 4) for name, e in embeddings}

    # What was said.
    transcript: str | None = None
    if spec is BUILTIN:
        transcript = transcribe(tools.asr(), consent_x, consent_sr)
        heard = speech_checks(script.text, transcript, names=required_names(terms), organisation=terms.organisation,
                              until=terms.valid_until.date(), challenge=script.challenge.split(), cfg=cfg)
        checks.extend(heard.checks)
        _require(heard.checks)
        asr_mode = _ASR_NAME
    elif spec is not None:  # a configured recogniser: its own measure and threshold, both sides normalised alike
        transcript = transcribe(tools.asr(spec), consent_x, consent_sr, language=script.language)
        heard_checks = measured_checks(script.text, transcript, script.challenge.split(), spec, script.language)
        checks.extend(heard_checks)
        _require(heard_checks)
        asr_mode = f"{spec.name} ({spec.measure})"[:64]
    else:
        asr_mode = f"confirmed by operator {who.name}"
        checks.append(Check("script read as printed", True, None, "heard", f"no recogniser for "
                            f"{script.language!r}; confirmed by hand by {who.name}"))

    return _record(ws, voice_id, script, terms, consent_audio, consent_sha, loaded, similarity, checks, transcript,
                   asr_mode, who.name, now, started)


def _record(ws: Workspace, voice_id: str, script: ConsentScriptRow, terms: Consent, consent_audio: Path,
            consent_sha: str, loaded: list[tuple[RecordingSource, np.ndarray, int, str]], similarity: dict[str, float],
            checks: list[Check], transcript: str | None, asr_mode: str, operator: str, now: datetime,
            started: float) -> EnrollmentResult:
    """Copy the files in, then write the enrollment, the consent record and its signatures in one transaction."""
    folder_rel = Path("voices") / voice_id / "enrollments" / str(script.id)
    final = ws.home / folder_rel
    staging = final.with_name(f".{script.id}.part")
    consent_name = f"consent{consent_audio.suffix.lower() or '.audio'}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _copy_checked(consent_audio, staging / consent_name, consent_sha)
        for src, _, _, sha in loaded:
            _copy_checked(src.path, staging / "wavs" / src.name, sha)
        with (staging / "metadata.csv").open("w", encoding="utf-8", newline="") as f:
            for src, *_ in loaded:
                f.write(f"{Path(src.name).stem}|{src.transcript}|{src.transcript}\n")
        (staging / "script.txt").write_text(script.text + "\n", encoding="utf-8")
        make_private(staging)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"Could not copy the enrollment into {final}: {exc.strerror}.") from exc
    elapsed = 0.0
    try:
        with ws.transaction() as s:
            who = ws.actor(s, operator, Role.ADMIN)
            row = s.get(ConsentScriptRow, script.id)
            if row is None or row.used_at is not None:
                raise ConsentError(f"Consent script {script.id} was used by another enrollment meanwhile.")
            voice = s.get(VoiceRow, voice_id)
            created = voice is None
            if voice is None:
                voice = VoiceRow(id=voice_id, name=terms.owner, languages=sorted(terms.scope.languages),
                                 engine=NO_ENGINE, model_ref="", config_ref=None, model_sha256="",
                                 state=VoiceState.ENROLLED.value, profile_sha256="", created_at=now)
                s.add(voice)
                s.flush()
            else:
                voice.state = _new_state(voice)
            elapsed = round(time.perf_counter() - started, 2)
            enrollment = EnrollmentRow(voice_id=voice_id, script_id=script.id, folder=str(folder_rel),
                                       consent_audio=consent_name, consent_audio_sha256=consent_sha,
                                       transcript=transcript, checks={"checks": [c.as_dict() for c in checks]},
                                       asr=asr_mode, operator=who.name, created_at=now, elapsed_s=elapsed)
            s.add(enrollment)
            s.flush()
            for src, x, sr, sha in loaded:
                s.add(RecordingRow(enrollment_id=enrollment.id, name=src.name, sha256=sha, transcript=src.transcript,
                                   duration_s=round(x.size / sr, 3), sample_rate=sr, similarity=similarity[src.name]))
            evidence = {
                "enrollment": enrollment.id,
                "script": {"id": script.id, "language": script.language, "challenge": script.challenge,
                           "text_sha256": hashlib.sha256(script.text.encode()).hexdigest()},
                "consent_audio": {"name": consent_name, "sha256": consent_sha},
                "recordings": [{"name": src.name, "sha256": sha,
                                "transcript_sha256": hashlib.sha256(src.transcript.encode()).hexdigest()}
                               for src, _, _, sha in loaded],
                "speech_recognition": asr_mode,
                "transcript": transcript,
                "checks": [c.as_dict() for c in checks],
                "witness": who.name,
            }
            signers = [(who, SignerCapacity.WITNESS)]
            if terms.owner_account and terms.owner_account != who.name:  # the owner signs with their own key
                signers.append((ws.actor(s, terms.owner_account, Role.OWNER), SignerCapacity.OWNER))
            consent = add_consent_row(ws, s, terms, ConsentKind.ENROLLMENT, evidence, signers=signers, now=now,
                                      enrollment_id=enrollment.id)
            row.used_at = now
            if created:
                ws.record(s, "voxgate.voice.enrolled", actor=who.name, subject=voice_id,
                          data={"name": voice.name, "languages": voice.languages, "state": voice.state}, now=now)
            ws.record(s, "voxgate.consent.enrolled", actor=who.name, subject=voice_id, now=now, data={
                "consent_sha256": consent.record_sha256, "enrollment": enrollment.id, "script": script.id,
                "consent_audio_sha256": consent_sha, "recordings": len(loaded),
                "signers": [f"{n.name} ({c.value})" for n, c in signers], "speech_recognition": asr_mode,
                **{c.name: c.figure for c in checks if c.name in ("word error rate", "character error rate", "speaker similarity")},
            })
            if final.exists():  # left by a crash between the rename and the commit: not referenced by any row
                shutil.rmtree(final)
            staging.rename(final)
            result = EnrollmentResult(voice_id, voice.state, created, consent.id, enrollment.id, consent.record_sha256,
                                      tuple(checks), len(loaded), round(sum(x.size / sr for _, x, sr, _ in loaded), 1),
                                      tuple(n.name for n, _ in signers), elapsed)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if final.exists() and not _referenced(ws, str(folder_rel)):
            shutil.rmtree(final, ignore_errors=True)
        raise
    return result


def _referenced(ws: Workspace, folder: str) -> bool:
    with ws.sessions() as s:
        return s.scalars(select(EnrollmentRow.id).where(EnrollmentRow.folder == folder)).first() is not None


def _copy_checked(src: Path, dest: Path, sha256: str) -> None:
    """Copy, then make sure the copy is the file that was checked (it may have changed meanwhile)."""
    atomic_copy(src, dest)
    if sha256_file(dest) != sha256:
        raise ConsentError(f"{src.name} changed while it was being enrolled; enroll again.")




__all__ = ["EnrollmentResult", "NO_ENGINE", "check_config", "enroll"]
