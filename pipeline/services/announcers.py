"""Announcers: who speaks the audible disclosure in each language, tried in order.

1. a recorded disclosure: a person read the disclosure text once
   (`voxgate disclosure add --lang ur --voice ID FILE`); checked (loudness,
   length, speech present, words where a recogniser covers the language),
   stored by sha256 and used verbatim;
2. an announcer model the operator supplies (`voxgate disclosure model --lang ur
   MODEL.onnx`): any Piper voice, .onnx and .onnx.json both pinned by sha256;
3. espeak-ng, for any language it speaks: robotic, the last resort, and said so
   in `voice show` and `review show`.

An announcer is never the model of a consenting voice: the disclosure must not
sound like the owner. A render in a language with none of the three is refused,
naming all three.
"""

from __future__ import annotations

import functools

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain import Role
from pipeline.errors import InputError, ProvenanceError
from pipeline.hashing import sha256_file
from pipeline.services.workspace import Workspace
from pipeline.store.models import AnnouncerRow, VoiceRow

ESPEAK_ANNOUNCER_VARIANT: Final = "f3"
"""espeak-ng variant the fallback announcer uses; another is taken if a consenting voice uses this one."""
_SPARE_VARIANTS: Final = ("f3", "m3", "f2", "m2", "f4")
DISCLOSURE_DURATION_S: Final = (2.0, 30.0)
MAX_RECORDING_WER: Final = 0.25


@dataclass(frozen=True)
class Announcer:
    """The announcer a render in `language` uses, and how to describe it to a reviewer."""

    language: str
    kind: str  # recording | model | espeak
    identity: str  # sha256 of the recording or model; "espeak-ng:ur+f3"
    robotic: bool
    path: Path | None = None
    config_path: Path | None = None
    config_sha256: str | None = None
    espeak_spec: str | None = None

    @property
    def description(self) -> str:
        if self.kind == "recording":
            return f"recorded disclosure {self.identity[:12]}"
        if self.kind == "model":
            return f"announcer model {self.path.name if self.path else ''} {self.identity[:12]}"
        return f"espeak-ng {self.espeak_spec} (robotic, last resort)"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "identity": self.identity, "robotic": self.robotic, "description": self.description}


def _primary(lang: str) -> str:
    return lang.replace("_", "-").split("-", 1)[0].lower()


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _file_sha256(path: Path) -> str:
    st = path.stat()
    return _cached_sha256(path, st.st_size, st.st_mtime_ns)


def consenting_identities(ws: Workspace, s: Session) -> set[str]:
    """Model sha256s and espeak voice identities of every voice in the workspace."""
    from pipeline.services.voices import resolve_ref
    from pipeline.synth.espeak import EspeakVoice

    found: set[str] = set()
    for voice in s.scalars(select(VoiceRow)):
        if voice.engine != "espeak" and voice.model_sha256:
            found.add(voice.model_sha256)  # the model with its config (`model_digest`)
            model = resolve_ref(voice.model_ref, ws.voice_dir(voice.id))
            if model.is_file():  # and the weights alone: another config cannot make the owner's model an announcer
                found.add(_file_sha256(model))
        if voice.engine == "espeak" and voice.config_ref:
            path = resolve_ref(voice.config_ref, ws.voice_dir(voice.id))
            if path.is_file():
                found.add(EspeakVoice.from_file(path).identity)
    return found


def choose(ws: Workspace, s: Session, lang: str, voice_id: str) -> Announcer:
    """The announcer for `lang` (recording for this voice, then model, then espeak-ng); refuse if none."""
    from pipeline.synth.espeak import EspeakVoice, speaks

    primary = _primary(lang)
    rows = list(s.scalars(select(AnnouncerRow).where(AnnouncerRow.language == primary,
                                                     AnnouncerRow.retired_at.is_(None)).order_by(AnnouncerRow.id.desc())))
    taken = consenting_identities(ws, s)
    for row in rows:
        if row.kind == "recording" and row.voice_id == voice_id:
            return Announcer(primary, "recording", row.sha256, False, path=ws.files.path(row.sha256))
    for row in rows:
        if row.kind == "model":
            if row.sha256 in taken:
                raise ProvenanceError(
                    f"Announcer model {row.path} for {primary!r} is also the model of a consenting voice; a disclosure "
                    "must not sound like the owner. Register another announcer (`voxgate disclosure model`).")
            return Announcer(primary, "model", row.sha256, False, path=Path(row.path or ""),
                             config_path=Path(f"{row.path}.json"), config_sha256=row.config_sha256)
    if speaks(primary):
        for variant in _SPARE_VARIANTS:
            candidate = EspeakVoice(primary, variant)
            if candidate.identity not in taken:
                return Announcer(primary, "espeak", candidate.identity, True, espeak_spec=candidate.spec)
    raise ProvenanceError(
        f"No announcer speaks {primary!r}, so the audible disclosure cannot be made; the clip was not rendered. "
        f"Add one of: a recorded disclosure (`voxgate disclosure add --lang {primary} --voice {voice_id} FILE`), "
        f"an announcer model (`voxgate disclosure model --lang {primary} MODEL.onnx`), or an espeak-ng voice for it."
    )


def describe(ws: Workspace, lang: str, voice_id: str) -> str:
    """One line for `voice show`: the announcer a render in `lang` would use, or why there is none."""
    with ws.sessions() as s:
        try:
            return choose(ws, s, lang, voice_id).description
        except ProvenanceError as exc:
            return f"none ({exc})"


def speak(announcer: Announcer, text: str, tools: Any) -> tuple[np.ndarray, int]:
    """The disclosure audio (float32 mono) and its sample rate; models are checked against their sha256 first."""
    from pipeline.export.probe import decode
    from pipeline.synth.espeak import EspeakEngine, EspeakVoice
    from pipeline.synth.text import normalise_for_speech, split_sentences

    if announcer.kind == "recording":
        assert announcer.path is not None
        if sha256_file(announcer.path) != announcer.identity:
            raise ProvenanceError(f"The recorded disclosure {announcer.identity[:12]} changed in the file store; "
                                  "add it again (`voxgate disclosure add`).")
        samples, sr = decode(announcer.path)
        return samples.astype(np.float32), sr
    if announcer.kind == "model":
        from pipeline.synth import PiperEngine

        assert announcer.path is not None and announcer.config_path is not None
        for path, digest in ((announcer.path, announcer.identity), (announcer.config_path, announcer.config_sha256)):
            if not path.is_file() or sha256_file(path) != digest:
                raise ProvenanceError(f"Announcer file {path} is missing or changed since it was registered; restore "
                                      "it or register the announcer again (`voxgate disclosure model`).")
        engine = tools.cached(f"announcer:{announcer.identity}", lambda: PiperEngine(announcer.path, announcer.config_path))
    else:
        language, _, variant = (announcer.espeak_spec or "").partition("+")
        engine = tools.cached(f"announcer:{announcer.identity}", lambda: EspeakEngine(EspeakVoice(language, variant or None)))
    sentences = [normalise_for_speech(x, announcer.language) for x in split_sentences(text, announcer.language)]
    from pipeline.audio.mix import join_with_pauses

    return join_with_pauses(engine.synthesize(sentences), engine.sample_rate, pause_s=0.35), engine.sample_rate


def add_recording(ws: Workspace, lang: str, voice_id: str, file: Path, tools: Any, *, actor: str | None,
                  now: datetime) -> AnnouncerRow:
    """Check a person's reading of the disclosure text and register it (by sha256) for `voice_id` in `lang`."""
    from pipeline.consent.checks import CheckConfig, audio_checks, audio_figures
    from pipeline.errors import AudioError
    from pipeline.export.probe import decode
    from pipeline.provenance.disclosure import disclosure_text
    from pipeline.quality.recognisers import error_rate, recogniser_for
    from pipeline.services.voices import current_consent, get_voice

    primary = _primary(lang)
    if not file.is_file():
        raise InputError(f"{file} does not exist; give the WAV (or any audio file ffmpeg reads) of the disclosure.")
    with ws.sessions() as s:
        get_voice(s, voice_id)
        owner = current_consent(s, voice_id).owner
    text = disclosure_text(primary, owner=owner, organisation=ws.config.organisation,
                           templates=ws.config.render.disclosure_texts or None)
    try:
        samples, sr = decode(file)
    except Exception as exc:  # noqa: BLE001 - ffmpeg refuses what it cannot read; say so in one line
        raise InputError(f"{file} is not audio ffmpeg can read ({type(exc).__name__}); record it as WAV.") from None
    try:
        figures = audio_figures(samples, sr)
    except AudioError as exc:
        raise InputError(f"{file}: {exc}") from None
    checks = [c for c in audio_checks("disclosure", figures, consent=False, cfg=CheckConfig())
              if not c.name.endswith("sample rate")]
    lo, hi = DISCLOSURE_DURATION_S
    failed = [c.line for c in checks if not c.passed]
    if not lo <= figures.duration_s <= hi:
        failed.append(f"disclosure duration: {figures.duration_s:.1f} s (needs {lo:g}–{hi:g} s)")
    words: dict[str, Any] = {"checked": False, "reason": f"no recogniser covers {primary!r}"}
    spec = recogniser_for(primary, ws.config.recognisers)
    if not failed and spec is not None:
        import ctranslate2

        from pipeline.audio.mix import resample
        from pipeline.consent.checks import ASR_SEED

        ctranslate2.set_random_seed(ASR_SEED)  # the same recording always gets the same verdict
        heard = tools.asr(spec).transcribe(resample(samples.astype(np.float32), sr, 16_000), 16_000,
                                           language=primary).text
        rate = error_rate(spec.measure, text, heard, primary)
        limit = min(spec.threshold, MAX_RECORDING_WER)
        words = {"checked": True, "recogniser": spec.label, "heard": heard, spec.measure: round(rate, 3)}
        if rate > limit:
            name = "word" if spec.measure == "wer" else "character"
            failed.append(f"disclosure words: heard {heard!r}, {name} error rate {rate:.2f} (needs <= {limit:g})")
    if failed:
        raise InputError(f"The recorded disclosure was not registered: {'; '.join(failed)}. Record it again, reading: {text}")
    digest = ws.files.put(file)
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        row = AnnouncerRow(language=primary, kind="recording", voice_id=voice_id, sha256=digest,
                           text_sha256=hashlib.sha256(text.encode()).hexdigest(),
                           checks={"duration_s": figures.duration_s, "integrated_lufs": round(figures.integrated_lufs, 1),
                                   "active_fraction": round(figures.active_fraction, 3), "words": words},
                           created_by=who.name, created_at=now)
        s.add(row)
        s.flush()
        ws.record(s, "voxgate.announcer.recording_added", actor=who.name, subject=f"{primary}:{voice_id}",
                  data={"sha256": digest, "text_sha256": row.text_sha256, "checks": row.checks}, now=now)
    return row


def add_model(ws: Workspace, lang: str, model: Path, *, actor: str | None, now: datetime) -> AnnouncerRow:
    """Register a Piper voice (.onnx beside its .onnx.json) as the announcer for `lang`, both files pinned."""
    primary = _primary(lang)
    config = Path(f"{model}.json")
    for path in (model, config):
        if not path.is_file():
            raise InputError(f"{path} does not exist; an announcer model is a Piper .onnx with its .onnx.json beside it.")
    model_sha, config_sha = sha256_file(model), sha256_file(config)
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        if model_sha in consenting_identities(ws, s):
            raise InputError(f"{model.name} is the model of a consenting voice; the announcer must be another voice, "
                             "so a disclosure never sounds like the owner.")
        row = AnnouncerRow(language=primary, kind="model", sha256=model_sha, config_sha256=config_sha,
                           path=str(model.resolve()), checks={}, created_by=who.name, created_at=now)
        s.add(row)
        s.flush()
        ws.record(s, "voxgate.announcer.model_added", actor=who.name, subject=primary,
                  data={"sha256": model_sha, "config_sha256": config_sha, "path": row.path}, now=now)
    return row


def list_announcers(ws: Workspace) -> list[AnnouncerRow]:
    with ws.sessions() as s:
        return list(s.scalars(select(AnnouncerRow).order_by(AnnouncerRow.id)))

