"""Enrollment: the owner's spoken consent, checked, signed and kept, and the recordings it covers.

    voxgate consent script VOICE …   print the script (with a fresh challenge phrase); store it as pending
    voxgate voice enroll VOICE …     check the owner's reading of it against the recordings; record the consent
    voxgate consent renew VOICE …    change the scope or end date with a new signed record
    voxgate consent show VOICE       the record, its checks, files and signatures, and its history

An enrollment runs every check before it writes anything, so a refusal leaves
the store unchanged. The consent audio and the recordings are copied into
`<home>/voices/<id>/enrollments/<script id>/`; the record stores the sha256 of
each, and `enrolled_recordings` is the only way training gets at them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
import shutil
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.consent.checks import (
    Check,
    CheckConfig,
    CheckTools,
    audio_checks,
    cosine,
    audio_figures,
    speaker_checks,
    speech_checks,
    transcribe,
)
from pipeline.consent.script import (
    CHALLENGE_WORD_COUNT,
    SCRIPT_LANGUAGES,
    base_language,
    challenge_phrase,
    consent_script,
    required_names,
)
from pipeline.domain import (
    ApprovalPolicyKind,
    Consent,
    ConsentKind,
    Role,
    Scope,
    SignerCapacity,
    VoiceState,
    check_consent_in_force,
    compare_scope,
    consent_status,
)
from pipeline.errors import AudioError, ConsentError, InputError, NotFoundError, PermissionError_, StoreError
from pipeline.hashing import sha256_file
from pipeline.services.voices import (
    _ID,
    add_consent_row,
    binding_revocation,
    consent_history,
    consent_of,
    consent_to_dict,
    current_consent,
    get_voice,
    record_problem,
    signatures_of,
    WITNESS_ONLY_NOTE,
    signed_consent,
    witness_only,
)
from pipeline.services.liveness import machine_checks
from pipeline.services.workspace import Workspace, utcnow
from pipeline.settings import CONFIG_FILE
from pipeline.store.files import SHARED_MODE, atomic_copy, atomic_output, make_private
from pipeline.store.models import (
    ConsentRow,
    ConsentScriptRow,
    EnrollmentRow,
    RecordingRow,
    UserRow,
    VoiceRow,
)

log = logging.getLogger(__name__)

MAX_SCRIPT_AGE: Final = timedelta(days=30)
"""A printed script must be read and enrolled within this time; after it, print a new one (a fresh challenge)."""
NO_ENGINE: Final = "none"  # the engine of a voice enrolled before any model exists
_VALUE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_LANGUAGE: Final = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_FILE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_USER: Final = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
_ASR_NAME: Final = "whisper tiny.en"


@dataclass(frozen=True)
class Recording:
    """A training recording covered by the voice's current enrollment (the API training codes against)."""

    path: Path
    sha256: str
    transcript: str


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


# --- the script -------------------------------------------------------------


def _values(raw: Sequence[str], what: str, pattern: re.Pattern[str]) -> frozenset[str]:
    """Comma-separated or repeated option values, checked."""
    items = {v.strip() for item in raw for v in item.split(",") if v.strip()}
    if not items:
        raise InputError(f"Give at least one of the {what} the owner consents to (--{what} a,b).")
    if bad := sorted(v for v in items if not pattern.match(v)):
        raise InputError(f"{what} {', '.join(map(repr, bad))}: use lower-case letters, digits, '-' or '_' "
                         "(languages as codes such as en or ur).")
    return frozenset(items)


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day, dtime.max, timezone.utc)


def _approvers(s: Session, owner_account: str | None, delegates: frozenset[str]) -> frozenset[str]:
    if owner_account is not None:
        user = s.get(UserRow, owner_account)
        if user is None or user.role != Role.OWNER.value:
            raise InputError(f"The owner's account {owner_account!r} must be a user with the owner role; "
                             f"add it first (`voxgate user add {owner_account} --role owner`).")
    for name in sorted(delegates):
        user = s.get(UserRow, name)
        if user is None or user.role not in (Role.OWNER.value, Role.DELEGATE.value):
            raise InputError(f"Delegate {name!r} must be a user with the delegate role; add them first "
                             f"(`voxgate user add {name} --role delegate`).")
    return delegates | ({owner_account} if owner_account else frozenset())


def _same_owner(s: Session, voice_id: str, owner: str) -> None:
    """A voice's owner never changes: its model and recordings are that person's voice."""
    owners = {h.owner for h in consent_history(s, voice_id)}
    if owners and owner not in owners:
        raise InputError(f"Voice {voice_id!r} belongs to {', '.join(sorted(owners))}; a voice's owner never changes. "
                         "Enroll the new owner under a new voice id.")


MAX_EARLIER_RECORDINGS: Final = 20
"""How many of an earlier enrollment's recordings a re-enrollment is compared with (evenly spread)."""


def _earlier_recordings(ws: Workspace, s: Session, voice_id: str) -> list[Path]:
    """Recordings of the voice's latest earlier enrollment, if any: a re-enrollment must be the same voice."""
    earlier = s.scalars(select(EnrollmentRow).where(EnrollmentRow.voice_id == voice_id)
                        .order_by(EnrollmentRow.id.desc()).limit(1)).first()
    if earlier is None:
        return []
    rows = list(s.scalars(select(RecordingRow).where(RecordingRow.enrollment_id == earlier.id).order_by(RecordingRow.id)))
    step = max(1, len(rows) // MAX_EARLIER_RECORDINGS)
    return [ws.home / earlier.folder / "wavs" / r.name for r in rows[::step][:MAX_EARLIER_RECORDINGS]]


def create_script(ws: Workspace, voice_id: str, *, owner: str, organisation: str, purposes: Sequence[str],
                  channels: Sequence[str], languages: Sequence[str], valid_until: date,
                  policy: str = ApprovalPolicyKind.BLANKET.value, delegates: Sequence[str] = (),
                  owner_account: str | None = None, language: str | None = None, actor: str | None, now: datetime,
                  rng: random.Random | None = None) -> ConsentScriptRow:
    """Print-ready consent script with a fresh, never-used challenge phrase, stored as a pending enrollment."""
    if not _ID.match(voice_id):
        raise InputError(f"Voice id {voice_id!r} must be lower-case letters, digits, '_' or '-'.")
    if not owner.strip():
        raise InputError("Give the owner's full name with --owner, as they will say it.")
    if organisation != ws.config.organisation:
        raise InputError(f"The consent must name this workspace's organisation, {ws.config.organisation!r}, "
                         f"not {organisation!r}; a voice can only be used by the organisation its owner consented to.")
    try:
        kind = ApprovalPolicyKind(policy)
    except ValueError:
        raise InputError(f"--policy must be blanket or per_statement, not {policy!r}.") from None
    scope = Scope(_values(purposes, "purposes", _VALUE), _values(channels, "channels", _VALUE),
                  _values(languages, "languages", _LANGUAGE))
    if valid_until <= now.date():
        raise InputError(f"--valid-until {valid_until} is not in the future; give the last day the consent holds.")
    language = language or ("en" if "en" in scope.languages else sorted(scope.languages)[0])
    if language not in scope.languages:
        raise InputError(f"The script language {language!r} must be one of the consented languages "
                         f"({', '.join(sorted(scope.languages))}).")
    if base_language(language) not in SCRIPT_LANGUAGES:
        raise InputError(f"There is no consent script in {language!r} yet (available: "
                         f"{', '.join(sorted(SCRIPT_LANGUAGES))}); choose one of those with --language.")
    rng = rng or random.SystemRandom()
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        voice = s.get(VoiceRow, voice_id)
        if voice is not None and not scope.languages <= set(voice.languages):
            raise InputError(f"Voice {voice_id!r} speaks {', '.join(voice.languages)}; the consent cannot cover "
                             f"{', '.join(sorted(scope.languages - set(voice.languages)))}.")
        _same_owner(s, voice_id, " ".join(owner.split()))
        approvers = _approvers(s, owner_account, _values(delegates, "delegates", _USER) if delegates else frozenset())
        if kind is ApprovalPolicyKind.PER_STATEMENT and not approvers:
            raise InputError("A per_statement policy needs someone to approve: the owner's account "
                             "(--owner-account) or named delegates (--delegates).")
        used = set(s.scalars(select(ConsentScriptRow.challenge)))
        for _ in range(100):
            words = challenge_phrase(rng, language, CHALLENGE_WORD_COUNT)
            if " ".join(words) not in used:
                break
        else:  # pragma: no cover - about 10^7 phrases per language
            raise StoreError("Could not draw an unused challenge phrase; try again.")
        terms = Consent(voice_id=voice_id, owner=" ".join(owner.split()), organisation=organisation, scope=scope,
                        valid_from=now, valid_until=_end_of_day(valid_until), policy=kind, approvers=approvers,
                        owner_account=owner_account)
        text = consent_script(terms, words, language)
        row = ConsentScriptRow(voice_id=voice_id, language=language, text=text, challenge=" ".join(words),
                               owner=terms.owner, owner_account=owner_account, organisation=organisation,
                               purposes=sorted(scope.purposes), channels=sorted(scope.channels),
                               languages=sorted(scope.languages), valid_until=terms.valid_until, policy=kind.value,
                               approvers=sorted(approvers), created_by=who.name, created_at=now)
        s.add(row)
        s.flush()
        ws.record(s, "voxgate.consent.script_created", actor=who.name, subject=voice_id,
                  data={"script": row.id, "language": language, "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
                        "challenge": row.challenge}, now=now)
    return row


def _terms(script: ConsentScriptRow, now: datetime) -> Consent:
    return Consent(voice_id=script.voice_id, owner=script.owner, organisation=script.organisation,
                   scope=Scope(frozenset(script.purposes), frozenset(script.channels), frozenset(script.languages)),
                   valid_from=now, valid_until=script.valid_until, policy=ApprovalPolicyKind(script.policy),
                   approvers=frozenset(script.approvers), statement=script.text, owner_account=script.owner_account)


def _pending_script(s: Session, voice_id: str, script_id: int | None, now: datetime) -> ConsentScriptRow:
    if script_id is None:
        script = s.scalars(select(ConsentScriptRow).where(ConsentScriptRow.voice_id == voice_id,
                                                          ConsentScriptRow.used_at.is_(None))
                           .order_by(ConsentScriptRow.id.desc()).limit(1)).first()
        if script is None:
            raise NotFoundError(f"No pending consent script for voice {voice_id!r}; print one with "
                                f"`voxgate consent script {voice_id} …` and have the owner read it aloud.")
    else:
        script = s.get(ConsentScriptRow, script_id)
        if script is None or script.voice_id != voice_id:
            raise NotFoundError(f"No consent script {script_id} for voice {voice_id!r}.")
    if script.used_at is not None:
        raise ConsentError(f"Consent script {script.id} was already used on {script.used_at:%Y-%m-%d}; its challenge "
                           f"phrase cannot be used twice. Print a new one with `voxgate consent script {voice_id} …`.")
    if now - script.created_at > MAX_SCRIPT_AGE:
        raise ConsentError(f"Consent script {script.id} was printed on {script.created_at:%Y-%m-%d}, more than "
                           f"{MAX_SCRIPT_AGE.days} days ago; print a new one with a fresh challenge phrase.")
    if script.valid_until <= now:
        raise ConsentError(f"Consent script {script.id} ends on {script.valid_until:%Y-%m-%d}, which has passed; "
                           "print a new one.")
    return script


# --- the recordings -----------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    name: str  # file name as it will be kept: <id>.wav
    path: Path
    transcript: str


def read_recordings(folder: Path) -> list[_Source]:
    """The training recordings in `folder`: LJSpeech `metadata.csv` (id|text|normalised text, wavs in wavs/ or
    beside it) or one `.txt` transcript beside each `.wav`."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; --recordings takes a folder of .wav files with transcripts.")
    meta = folder / "metadata.csv"
    sources: list[_Source] = []
    if meta.is_file():
        try:
            lines = meta.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise InputError(f"{meta} is not UTF-8 text; save it as UTF-8.") from None
        for number, row in enumerate(csv.reader(lines, delimiter="|", quoting=csv.QUOTE_NONE), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2 or not _FILE.match(row[0].strip()):
                raise InputError(f"{meta} line {number}: expected `id|transcript[|normalised transcript]` with a "
                                 f"plain file id, got {'|'.join(row)[:80]!r}.")
            rid = row[0].strip()
            text = (row[2] if len(row) > 2 and row[2].strip() else row[1]).strip()
            wav = next((p for p in (folder / "wavs" / f"{rid}.wav", folder / f"{rid}.wav") if p.is_file()), None)
            if wav is None:
                raise InputError(f"{meta} line {number} names {rid!r}, but neither wavs/{rid}.wav nor {rid}.wav exists.")
            sources.append(_Source(f"{rid}.wav", wav, text))
        listed = {src.path.resolve() for src in sources}
        unlisted = sorted(p.name for d in (folder, folder / "wavs") if d.is_dir() for p in d.glob("*.wav")
                          if p.resolve() not in listed)
        if unlisted:
            raise InputError(f"{len(unlisted)} .wav file(s) are not in metadata.csv ({', '.join(unlisted[:3])}); "
                             "add their transcripts or move them out of the folder.")
    else:
        for wav in sorted(folder.glob("*.wav")):
            txt = wav.with_suffix(".txt")
            if not txt.is_file():
                raise InputError(f"{wav.name} has no transcript: put the words it says in {txt.name} beside it, "
                                 "or give a metadata.csv.")
            if not _FILE.match(wav.name):
                raise InputError(f"{wav.name}: recording names may hold letters, digits, '.', '_' and '-' only.")
            try:
                sources.append(_Source(wav.name, wav, " ".join(txt.read_text(encoding="utf-8-sig").split())))
            except UnicodeDecodeError:
                raise InputError(f"{txt} is not UTF-8 text; save it as UTF-8.") from None
    if not sources:
        raise InputError(f"{folder} holds no recordings: give .wav files with a .txt beside each, or a metadata.csv.")
    if empty := [src.name for src in sources if not src.transcript]:
        raise InputError(f"{empty[0]} has an empty transcript; write the words it says.")
    names = [src.name for src in sources]
    if len(set(names)) != len(names):
        raise InputError(f"{folder} names a recording twice; every id must be unique.")
    return sources


def _load_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise InputError(f"{path.name} could not be read as a WAV file ({exc}).") from None
    return data.mean(axis=1), int(sr)


def _load_any(path: Path) -> tuple[np.ndarray, int]:
    """Consent audio in any format ffmpeg reads (a phone's m4a, an mp3, a WAV), at its own rate."""
    from pipeline.export.probe import decode

    if path.suffix.lower() == ".wav":
        return _load_wav(path)
    try:
        return decode(path)
    except AudioError as exc:
        raise InputError(f"The consent audio {path.name} could not be decoded: {exc}") from None


# --- enrollment ---------------------------------------------------------------


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
    "word error rate": "the reading does not match the script; the owner must read it as printed",
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
        script = _pending_script(s, voice_id, script_id, now)
        voice = s.get(VoiceRow, voice_id)
        if voice is not None and not set(script.languages) <= set(voice.languages):
            raise InputError(f"Voice {voice_id!r} speaks {', '.join(voice.languages)}; the script covers "
                             f"{', '.join(script.languages)}. Print a script for the voice's languages.")
        if script.organisation != ws.config.organisation:
            raise ConsentError(f"Script {script.id} names {script.organisation!r}, not this workspace's organisation.")
        _same_owner(s, voice_id, script.owner)
        earlier = _earlier_recordings(ws, s, voice_id)
        terms = _terms(script, now)
        s.expunge(script)
    from pipeline.quality.asr import supports

    recognised = supports(script.language)
    if recognised and confirmed_by_operator:
        raise InputError(f"--confirmed-by-operator is for languages without a bundled recogniser; "
                         f"{script.language!r} consent audio is checked by speech recognition.")
    if not recognised and not confirmed_by_operator:
        raise ConsentError(f"No bundled speech recogniser for {script.language!r}: listen to the consent audio "
                           "against the script (names, organisation, end date, challenge words) and, if it "
                           "matches, enroll again with --confirmed-by-operator.")
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
    consent_x, consent_sr = _load_any(consent_audio)
    checks: list[Check] = audio_checks("consent audio", audio_figures(consent_x, consent_sr), consent=True, cfg=cfg)
    _require(checks)
    # Who made it: a person, not a voice generator (nor one of our own clips played back).
    machine = machine_checks(ws, consent_x, consent_sr, tools.presence())
    checks.extend(machine)
    _require(machine)
    loaded: list[tuple[_Source, np.ndarray, int, str]] = []
    total_s = 0.0
    for src in sources:
        x, sr = _load_wav(src.path)
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
            before = np.mean([encoder.embed(*_load_wav(path)) for path in earlier], axis=0)
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
    if recognised:
        transcript = transcribe(tools.asr(), consent_x, consent_sr)
        heard = speech_checks(script.text, transcript, names=required_names(terms), organisation=terms.organisation,
                              until=terms.valid_until.date(), challenge=script.challenge.split(), cfg=cfg)
        checks.extend(heard.checks)
        _require(heard.checks)
        asr_mode = _ASR_NAME
    else:
        asr_mode = f"confirmed by operator {who.name}"
        checks.append(Check("script read as printed", True, None, "heard", f"no recogniser for "
                            f"{script.language!r}; confirmed by hand by {who.name}"))

    return _record(ws, voice_id, script, terms, consent_audio, consent_sha, loaded, similarity, checks, transcript,
                   asr_mode, who.name, now, started)


def _record(ws: Workspace, voice_id: str, script: ConsentScriptRow, terms: Consent, consent_audio: Path,
            consent_sha: str, loaded: list[tuple[_Source, np.ndarray, int, str]], similarity: dict[str, float],
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
                **{c.name: c.figure for c in checks if c.name in ("word error rate", "speaker similarity")},
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


# --- what training may use ------------------------------------------------------


def enrolled_recordings(ws: Workspace, voice_id: str) -> list[Recording]:
    """The recordings the voice's current consent rests on: the only ones training may use.

    Refused when the consent is missing, revoked or expired. A voice whose
    consent came from a profile (`voice add`) has no enrolled recordings.
    Each `Recording.sha256` is what was enrolled: check it on the bytes you read.
    """
    now = utcnow()
    with ws.sessions() as s:
        get_voice(s, voice_id)
        check_consent_in_force(signed_consent(s, ws, voice_id), voice_id, now)  # no recording may be used without it
        row = current_consent(s, voice_id)
        if row.enrollment_id is None:
            return []
        enrollment = s.get(EnrollmentRow, row.enrollment_id)
        folder = ws.home / enrollment.folder / "wavs"
        rows = s.scalars(select(RecordingRow).where(RecordingRow.enrollment_id == enrollment.id)
                         .order_by(RecordingRow.id))
        return [Recording(folder / r.name, r.sha256, r.transcript) for r in rows]


# --- renewal ------------------------------------------------------------------------


def renew_consent(ws: Workspace, voice_id: str, *, purposes: Sequence[str] | None = None,
                  channels: Sequence[str] | None = None, languages: Sequence[str] | None = None,
                  valid_until: date | None = None, policy: str | None = None, delegates: Sequence[str] | None = None,
                  actor: str | None, now: datetime) -> tuple[ConsentRow, tuple[str, ...], tuple[str, ...]]:
    """A new signed record with a wider or narrower scope; the old one stays as history.

    Narrowing (fewer purposes, channels, languages or delegates, an earlier end,
    per-statement approval) may be signed by the owner, a named delegate or an
    admin. Widening anything needs the owner's own signature: run it as the
    owner's account. Returns (new record, widened, narrowed).
    """
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.OWNER, Role.DELEGATE)
        voice = get_voice(s, voice_id)
        old_row = current_consent(s, voice_id)
        if old_row is None:
            raise NotFoundError(f"Voice {voice_id!r} has no consent to renew; enroll it (`voxgate consent script`).")
        in_force = signed_consent(s, ws, voice_id)
        if in_force is not None and in_force.revoked_at is not None:
            raise ConsentError(f"Consent for voice {voice_id!r} was revoked on {in_force.revoked_at:%Y-%m-%d}; a revoked "
                               f"consent cannot be renewed. Enroll again: `voxgate consent script {voice_id} …`.")
        old = consent_of(old_row)
        assert old is not None
        if who.role != Role.ADMIN.value and who.name not in old.approvers:
            raise PermissionError_(f"{who.name} is not the owner or a named delegate of voice {voice_id!r}.")
        scope = Scope(
            _values(purposes, "purposes", _VALUE) if purposes else old.scope.purposes,
            _values(channels, "channels", _VALUE) if channels else old.scope.channels,
            _values(languages, "languages", _LANGUAGE) if languages else old.scope.languages,
        )
        if not scope.languages <= set(voice.languages):
            raise InputError(f"Voice {voice_id!r} speaks {', '.join(voice.languages)}; the consent cannot cover "
                             f"{', '.join(sorted(scope.languages - set(voice.languages)))}.")
        if policy is not None:
            try:
                kind = ApprovalPolicyKind(policy)
            except ValueError:
                raise InputError(f"--policy must be blanket or per_statement, not {policy!r}.") from None
        else:
            kind = old.policy
        named = (_values(delegates, "delegates", _USER) if delegates else old.approvers - ({old.owner_account} if old.owner_account else frozenset()))
        approvers = _approvers(s, old.owner_account, named)
        if kind is ApprovalPolicyKind.PER_STATEMENT and not approvers:
            raise InputError("A per_statement policy needs someone to approve: the owner's account or a delegate.")
        until = _end_of_day(valid_until) if valid_until else old.valid_until
        if until <= now:
            raise InputError(f"--valid-until {until:%Y-%m-%d} is not in the future.")
        new = Consent(voice_id=voice_id, owner=old.owner, organisation=old.organisation, scope=scope, valid_from=now,
                      valid_until=until, policy=kind, approvers=approvers, owner_account=old.owner_account,
                      approver_keys=old.approver_keys)  # keys stay bound as the owner bound them
        change = compare_scope(old, new)
        if not change.widened and not change.narrowed:
            raise InputError("The renewal changes nothing; give the new --purposes, --channels, --languages, "
                             "--valid-until, --policy or --delegates.")
        if change.extends and who.name != old.owner_account:
            raise PermissionError_(
                f"Widening the consent ({'; '.join(change.widened)}) needs the owner's own signature: "
                + (f"run it as the owner's account (`--as {old.owner_account}`)" if old.owner_account else
                   "this consent names no owner account, so the owner must enroll again with a new consent script")
                + ". A delegate or an admin can only narrow it."
            )
        language = "en" if "en" in scope.languages else sorted(scope.languages)[0]
        new = replace(new, statement=consent_script(new, None, language))
        capacity = SignerCapacity.OWNER if who.name == old.owner_account else SignerCapacity.RENEWED_BY
        evidence = {"renews": old_row.record_sha256, "enrollment": old_row.enrollment_id,
                    "widened": list(change.widened), "narrowed": list(change.narrowed), "signed_by": who.name}
        row = add_consent_row(ws, s, new, ConsentKind.RENEWAL, evidence, signers=[(who, capacity)], now=now,
                              enrollment_id=old_row.enrollment_id, supersedes_id=old_row.id)
        ws.record(s, "voxgate.consent.renewed", actor=who.name, subject=voice_id, now=now, data={
            "consent_sha256": row.record_sha256, "renews": old_row.record_sha256, "widened": list(change.widened),
            "narrowed": list(change.narrowed), **consent_to_dict(new)})
    return row, change.widened, change.narrowed


# --- showing it -------------------------------------------------------------------------


def _status(s: Session, voice: VoiceRow, row: ConsentRow, now: datetime) -> str:
    """The one consent status (`domain.consent_status`), with revocations read from their signed records."""
    consent = consent_of(row)
    assert consent is not None
    if (rev := binding_revocation(s, voice.id, voice.model_sha256, row)) is not None:
        consent = replace(consent, revoked_at=rev.at, revoked_reason=rev.reason)
    return consent_status(consent, now).value


def consent_details(ws: Workspace, voice_id: str, *, now: datetime) -> dict[str, Any]:
    """Everything `consent show` and the certificate print: record, checks, files, signatures, history."""
    with ws.sessions() as s:
        voice = get_voice(s, voice_id)
        row = current_consent(s, voice_id, verified=False)
        if row is None:
            raise NotFoundError(f"Voice {voice_id!r} has no consent on file.")
        problem = record_problem(s, row)
        keys = {u.name: u for u in s.scalars(select(UserRow))}
        signed = signatures_of(s, row)
        signatures = [
            {"signer": name, "capacity": capacity, "role": keys[name].role if name in keys else None,
             "public_key": keys[name].public_key.hex() if name in keys else None, "valid": valid}
            for name, capacity, valid in signed
        ]
        enrollment = s.get(EnrollmentRow, row.enrollment_id) if row.enrollment_id else None
        enrolled = None
        if enrollment is not None:
            recordings = list(s.scalars(select(RecordingRow).where(RecordingRow.enrollment_id == enrollment.id)
                                        .order_by(RecordingRow.id)))
            script = s.get(ConsentScriptRow, enrollment.script_id)
            enrolled = {
                "id": enrollment.id, "operator": enrollment.operator, "created_at": enrollment.created_at,
                "elapsed_s": enrollment.elapsed_s, "speech_recognition": enrollment.asr,
                "transcript": enrollment.transcript, "challenge": script.challenge if script else None,
                "folder": enrollment.folder, "checks": enrollment.checks.get("checks", []),
                "consent_audio": {"name": enrollment.consent_audio, "sha256": enrollment.consent_audio_sha256},
                "recordings": [{"name": r.name, "sha256": r.sha256, "duration_s": r.duration_s,
                                "sample_rate": r.sample_rate, "similarity": r.similarity, "transcript": r.transcript}
                               for r in recordings],
                "recordings_s": round(sum(r.duration_s for r in recordings), 1),
            }
        history = [{"id": h.id, "kind": h.kind or ConsentKind.PROFILE.value, "created_at": h.created_at,
                    "valid_from": h.valid_from, "valid_until": h.valid_until, "purposes": h.purposes,
                    "channels": h.channels, "languages": h.languages, "policy": h.policy,
                    "record_sha256": h.record_sha256, "revoked_at": h.revoked_at, "revoked_by": h.revoked_by,
                    "revoked_reason": h.revoked_reason, "current": h.id == row.id}
                   for h in consent_history(s, voice_id)]
        return {
            "voice": {"id": voice.id, "name": voice.name, "state": voice.state, "languages": voice.languages,
                      "engine": voice.engine, "model_sha256": voice.model_sha256 or None},
            "organisation": ws.config.organisation,
            "consent": {
                "id": row.id, "kind": row.kind or ConsentKind.PROFILE.value, "status": _status(s, voice, row, now),
                "owner": row.owner, "owner_account": row.owner_account, "organisation": row.organisation,
                "statement": row.statement, "purposes": row.purposes, "channels": row.channels,
                "languages": row.languages, "valid_from": row.valid_from, "valid_until": row.valid_until,
                "policy": row.policy, "approvers": row.approvers, "record_sha256": row.record_sha256,
                "approver_keys": row.approver_keys or {},
                "witness_only": witness_only(signed), "witness_only_note": WITNESS_ONLY_NOTE if witness_only(signed) else "",
                "verified": problem is None, "problem": problem, "created_at": row.created_at,
                "revoked_at": row.revoked_at, "revoked_by": row.revoked_by, "revoked_reason": row.revoked_reason,
                "evidence": json.loads(row.record_json).get("evidence") if row.record_json else None,
            },
            "enrollment": enrolled,
            "signatures": signatures,
            "history": history,
            "generated_at": now,
        }


def write_certificate(ws: Workspace, voice_id: str, out: Path, *, now: datetime) -> Path:
    """Write the one-page HTML consent certificate to `out` (atomically)."""
    from pipeline.consent.certificate import render_certificate

    if out.is_dir():
        out = out / f"consent-{voice_id}.html"
    if not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a folder; create it first.")
    html = render_certificate(consent_details(ws, voice_id, now=now))
    try:
        with atomic_output(out, mode=SHARED_MODE) as tmp:  # for the owner to keep, outside the workspace
            tmp.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"Could not write {out}: {exc.strerror}; check the folder's permissions.") from exc
    return out


__all__ = [
    "EnrollmentResult",
    "Recording",
    "consent_details",
    "create_script",
    "enroll",
    "enrolled_recordings",
    "read_recordings",
    "renew_consent",
    "write_certificate",
]
