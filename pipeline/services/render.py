"""Rendering: approved text becomes a labelled, watermarked, registered draft clip.

    consent gate + approvals (again, now) → sentences → engine → pauses →
    loudness → audible disclosure → presence watermark (verified; this is the
    premaster every recipient's copy is marked from) → payload watermark with
    the clip serial and final loudness (`services.copies`) → quality gates →
    WAV / MP3 / Ogg Opus / M4A with AI labels and signed content credentials
    (embedded; a sidecar for Ogg) → file store → draft_ready

A worker claims a statement by moving it to `rendering` inside one write
transaction, so two workers never render the same statement. Every step that
proves or labels the clip fails closed: the render stops, the statement goes
back to `text_approved`, and no clip is registered.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
from sqlalchemy import select

from pipeline.domain import ClipEvent, ClipState, Event, Role, State
from pipeline.domain.policy import check_voice_renders
from pipeline.errors import ConsentError, ProvenanceError, VoxgateError
from pipeline.domain.serials import clip_serial
from pipeline.provenance.credentials import load_identity
from pipeline.services.clip_provenance import clip_provenance
from pipeline.services.copies import (
    MASTER_RATE,
    PREMASTER,
    check_marks_in,
    export_signed,
    mark_serial,
    payload_mark,
    write_premaster,
)
from pipeline.services.review import require_text_approved
from pipeline.services.statements import clip_transition, get_statement, transition
from pipeline.services.tools import Tools
from pipeline.services.voices import current_consent, get_voice, model_ref
from pipeline.services.workspace import Workspace
from pipeline.store.models import ClipFileRow, ClipRow, StatementRow
from pipeline.synth.base import ModelRef

log = logging.getLogger(__name__)

STALE_CLAIM: Final = timedelta(minutes=30)  # a `rendering` claim older than this is taken as crashed
DEFAULT_MAX_WER: Final = 0.25
ANNOUNCER_LANGUAGES: Final = frozenset({"en"})  # what the packaged announcer voice can speak

Progress = Callable[[str], None]
"""Called with a short description as each render step starts."""

STEPS: Final = ("claim", "synthesise", "loudness", "disclosure", "watermark", "quality", "export", "register")


@dataclass(frozen=True)
class RenderJob:
    """What a claimed render needs, read once inside the claim's transaction."""

    text: str
    language: str
    voice: str
    voice_name: str
    ref: ModelRef
    owner: str
    consent_sha256: str
    revision_sha256: str
    actor: str


@dataclass(frozen=True)
class RenderResult:
    statement_id: int
    clip_id: int
    figures: dict[str, Any]


def claimable(ws: Workspace, now: datetime) -> list[int]:
    """Statements waiting to be rendered, plus renders whose worker died (stale claims)."""
    with ws.sessions() as s:
        rows = s.scalars(select(StatementRow).where(
            StatementRow.state.in_([State.TEXT_APPROVED.value, State.RENDERING.value])).order_by(StatementRow.id))
        return [r.id for r in rows if r.state == State.TEXT_APPROVED.value or now - r.updated_at > STALE_CLAIM]


def _claim(ws: Workspace, statement_id: int, *, actor: str | None, now: datetime) -> tuple[int, RenderJob]:
    """Check the gates and move the statement to `rendering`; reserve the clip serial."""
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.REVIEWER, Role.SUBMITTER)
        row = get_statement(s, statement_id)
        if row.state == State.RENDERING.value and now - row.updated_at > STALE_CLAIM:
            for old in s.scalars(select(ClipRow).where(ClipRow.statement_id == row.id,
                                                       ClipRow.state == ClipState.RENDERING.value)):
                clip_transition(ws, s, old, ClipEvent.FAILED, actor="system", now=now, data={"reason": "stale claim"})
            transition(ws, s, row, Event.RENDER_FAILED, actor="system", now=now, data={"reason": "stale claim"})
        require_text_approved(s, ws, row, now)  # consent and approvals, at this very moment
        transition(ws, s, row, Event.RENDER_CLAIMED, actor=who.name, now=now)
        voice = get_voice(s, row.voice_id)
        check_voice_renders(voice.id, voice.state)  # an enrolled voice has no usable model until trained
        consent = current_consent(s, row.voice_id)
        rev = row.revisions[-1]
        clip = ClipRow(statement_id=row.id, revision=rev.number, revision_sha256=rev.sha256, voice_id=voice.id,
                       model_sha256=voice.model_sha256, audio_sha256="", settings={}, figures={}, labels={},
                       state=ClipState.RENDERING.value, created_at=now)
        s.add(clip)
        s.flush()
        job = RenderJob(text=rev.text, language=row.language, voice=voice.id, voice_name=voice.name,
                        ref=model_ref(voice, ws), owner=consent.owner, consent_sha256=consent.record_sha256,
                        revision_sha256=rev.sha256, actor=who.name)
        return clip.id, job


def render_statement(ws: Workspace, statement_id: int, tools: Tools, *, actor: str | None, now: datetime,
                     progress: Progress = lambda _step: None) -> RenderResult:
    progress("claim")
    clip_id, job = _claim(ws, statement_id, actor=actor, now=now)
    try:
        with tempfile.TemporaryDirectory(prefix="voxgate-render-", dir=ws.home) as tmp:
            figures, settings, labels, files = _produce(ws, clip_id, statement_id, job, tools, Path(tmp), now, progress)
            progress("register")
            _register(ws, statement_id, clip_id, figures, settings, labels, files, actor=job.actor, now=now)
    except BaseException as exc:
        _release_claim(ws, statement_id, clip_id, exc, now=now)
        raise
    return RenderResult(statement_id, clip_id, figures)


def _produce(ws: Workspace, clip_id: int, statement_id: int, job: RenderJob, tools: Tools, tmp: Path,
             now: datetime, progress: Progress) -> tuple[dict, dict, dict, dict[str, Path]]:
    from pipeline.audio.loudness import normalise
    from pipeline.audio.mix import concat, join_with_pauses, join_with_timeline, resample
    from pipeline.provenance.disclosure import disclosure_text
    from pipeline.provenance.labels import ClipLabels, ai_notice
    from pipeline.synth.text import normalise_for_speech, split_sentences

    cfg = ws.config.render
    lang = job.language
    progress("synthesise")
    written = split_sentences(job.text, lang)
    sentences = [normalise_for_speech(x, lang) for x in written]
    engine = tools.engine(job.ref)
    chunks = engine.synthesize(sentences)
    joined, spans = join_with_timeline(chunks, engine.sample_rate, pause_s=cfg.sentence_pause_s)
    speech = resample(joined, engine.sample_rate, MASTER_RATE)

    progress("loudness")
    speech = normalise(speech, MASTER_RATE, target_lufs=cfg.target_lufs, true_peak_dbtp=cfg.true_peak_dbtp)

    progress("disclosure")
    disclosure_at = cfg.disclosure
    if disclosure_at != "none":
        if lang not in ANNOUNCER_LANGUAGES:
            raise ProvenanceError(
                f"No announcer voice speaks {lang!r}, so the audible disclosure cannot be made; the clip was not "
                "rendered. Install an announcer voice for it, or set render.disclosure = \"none\" if labels suffice."
            )
        text = disclosure_text(lang, owner=job.owner, organisation=ws.config.organisation,
                               templates=cfg.disclosure_texts or None)
        announcer = tools.announcer_engine()
        spoken = join_with_pauses(announcer.synthesize(split_sentences(text, "en")), announcer.sample_rate,
                                  pause_s=cfg.sentence_pause_s)
        spoken = normalise(resample(spoken, announcer.sample_rate, MASTER_RATE), MASTER_RATE,
                           target_lufs=cfg.target_lufs, true_peak_dbtp=cfg.true_peak_dbtp)
        before = [spoken] if disclosure_at in ("before", "both") else []
        after = [spoken] if disclosure_at in ("after", "both") else []
        audio = concat([*before, speech, *after], MASTER_RATE, gap_s=cfg.disclosure_gap_s)
        speech_offset = (len(spoken) + int(cfg.disclosure_gap_s * MASTER_RATE)) if before else 0
    else:
        text, audio, speech_offset = "", speech, 0

    # Sentence boundaries in the master's seconds: what captions are timed from.
    offset = speech_offset / MASTER_RATE
    timeline = [{"start": round(a + offset, 3), "end": round(b + offset, 3), "text": t}
                for t, span in zip(written, spans) if span is not None for a, b in [span]]

    progress("watermark")
    presence = tools.presence_mark()
    mark = payload_mark(ws)
    premaster, _ = presence.embed_and_verify(audio, MASTER_RATE)  # every recipient's copy is marked from this
    audio, marks = mark_serial(premaster, clip_serial(clip_id), presence, mark, target_lufs=cfg.target_lufs,
                               true_peak_dbtp=cfg.true_peak_dbtp)

    progress("quality")
    figures: dict[str, Any] = {
        "duration_s": round(len(audio) / MASTER_RATE, 3),
        "speech_s": round(len(speech) / MASTER_RATE, 3),
        "sentences": len(sentences),
        "integrated_lufs": marks["integrated_lufs"],
        "true_peak_dbtp": marks["true_peak_dbtp"],
        "presence_score": marks["presence_score"],
        "disclosure": disclosure_at,
        "engine": engine.name,
        "device": engine.device,
    }
    figures.update(_asr_gate(tools, audio[speech_offset:speech_offset + len(speech)], job.text, lang))

    progress("export")
    labels = ClipLabels(
        clip_id=str(clip_id), statement_id=statement_id, voice_id=job.voice, voice_name=job.voice_name,
        organisation=ws.config.organisation, language=lang, created_at=now.isoformat(),
        ai_notice=ai_notice(owner=job.owner, organisation=ws.config.organisation),
    )
    settings = {
        "engine": job.ref.engine, "model_sha256": job.ref.sha256, "sample_rate": MASTER_RATE,
        "target_lufs": cfg.target_lufs, "true_peak_dbtp": cfg.true_peak_dbtp, "sentence_pause_s": cfg.sentence_pause_s,
        "disclosure": disclosure_at, "disclosure_text": text, "consent_sha256": job.consent_sha256,
        "revision_sha256": job.revision_sha256, "timeline": timeline,
    }
    manifest = clip_provenance(ws, clip_id, statement_id, voice=job.voice, voice_name=job.voice_name,
                               language=job.language, consent_sha256=job.consent_sha256,
                               revision_sha256=job.revision_sha256, settings=settings, now=now).manifest()
    files = export_signed(audio, tmp, f"clip-{clip_id}", labels, manifest, load_identity(ws.c2pa_dir))
    files[PREMASTER] = write_premaster(premaster, tmp / f"clip-{clip_id}.premaster.wav")
    # The lossy export a messaging app will carry must still carry both marks.
    forwarded = check_marks_in(files["ogg"], clip_id, presence, mark, "Ogg Opus export")
    figures["presence_score_ogg"] = forwarded["presence_score"]
    figures["payload_confidence"] = marks["payload_confidence"]
    figures["payload_confidence_ogg"] = forwarded["payload_confidence"]
    return figures, settings, labels.as_tags(), files


def _asr_gate(tools: Tools, speech: np.ndarray, text: str, lang: str) -> dict[str, Any]:
    """Speech recognition of the message against the approved text (where a recogniser exists)."""
    from pipeline.quality.asr import supports
    from pipeline.quality.wer import word_error_rate

    if not supports(lang):
        return {"wer": None, "asr": f"no bundled recogniser for {lang!r}"}
    transcript = tools.asr().transcribe(speech, MASTER_RATE)
    wer = word_error_rate(text, transcript.text)
    if wer > DEFAULT_MAX_WER:
        raise ProvenanceError(
            f"Quality gate: the speech recogniser heard {transcript.text!r}, a word error rate of {wer:.2f} against the "
            f"approved text (limit {DEFAULT_MAX_WER}); the clip was not registered. Check the voice model."
        )
    return {"wer": round(wer, 3), "asr": "whisper tiny.en"}


def _register(ws: Workspace, statement_id: int, clip_id: int, figures: dict, settings: dict, labels: dict,
              files: dict[str, Path], *, actor: str, now: datetime) -> None:
    digests = {fmt: ws.files.put(path) for fmt, path in files.items()}
    with ws.transaction() as s:
        row = get_statement(s, statement_id)
        clip = s.get(ClipRow, clip_id)
        if row.state != State.RENDERING.value or clip.state != ClipState.RENDERING.value:
            raise ConsentError(f"Statement {statement_id} left the render queue while rendering ({row.state}); "
                               "the clip was discarded.")
        # Consent may have been revoked while we rendered: check again before anything is registered.
        require_text_approved(s, ws, row, now)
        clip.premaster_sha256 = digests.pop(PREMASTER)  # kept, never handed out: see services.deliveries
        for fmt, digest in digests.items():
            s.add(ClipFileRow(clip_id=clip_id, format=fmt, sha256=digest, size=files[fmt].stat().st_size))
        clip.audio_sha256, clip.figures, clip.settings, clip.labels = digests["wav"], figures, settings, labels
        clip_transition(ws, s, clip, ClipEvent.REGISTERED, actor=actor, now=now, data={"audio_sha256": digests["wav"]})
        transition(ws, s, row, Event.RENDERED, actor=actor, now=now,
                   data={"clip": clip_id, "audio_sha256": digests["wav"], **figures})


def _release_claim(ws: Workspace, statement_id: int, clip_id: int, exc: BaseException, *, now: datetime) -> None:
    """Put the statement back in the queue after a failed render; never leave a half-registered clip."""
    reason = str(exc) if isinstance(exc, VoxgateError) else f"{type(exc).__name__}: {exc}"
    with ws.transaction() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is not None and clip.state == ClipState.RENDERING.value:
            clip_transition(ws, s, clip, ClipEvent.FAILED, actor="system", now=now, data={"reason": reason[:500]})
        row = get_statement(s, statement_id)
        if row.state == State.RENDERING.value:
            transition(ws, s, row, Event.RENDER_FAILED, actor="system", now=now, data={"reason": reason[:500]})

