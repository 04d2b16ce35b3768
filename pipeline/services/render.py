"""Rendering: approved text becomes a labelled, watermarked, registered draft clip.

    consent gate + approvals (again, now) → sentences → engine → pauses →
    loudness → audible disclosure → presence watermark (the premaster every
    recipient's copy is marked from) → payload watermark with the clip serial
    and final loudness (`services.copies`) → WAV / MP3 / Ogg Opus / M4A with AI
    labels and signed content credentials (embedded; a sidecar for Ogg), both
    marks read back from the whole Ogg Opus → quality gates (speech
    recognition runs beside, from synthesis to the exports) → file store →
    draft_ready

A render runs in four parts, each a step of a durable render job
(`services.render_jobs`): the claim; `synthesise` (synthesis to the
premaster, stored content-addressed); `produce` (from the stored premaster:
the serial mark and the signed exports, stored content-addressed once speech
recognition heard the approved words); and `register`. Speech recognition
starts on the synthesised speech and runs beside the rest of both parts; a
worker killed while producing resumes from the stored premaster, without
synthesising again, and hears the speech in it. `render_statement` runs the
four in this process.

A worker claims a statement by moving it to `rendering` inside one write
transaction (the store's write lock: two workers never claim the same
statement) and holds a *lease* on the claim, renewed every 10 s while it
renders. The claim is fenced: the clip row is the claim, its `worker` names the
holder, and registering checks that the clip is still this holder's — so a
slow but living worker whose claim was taken over cannot register a result
too — and the store holds at most one live clip per revision (a unique index).
A claim held by a render job (`<worker>/<job id>`) passes to whichever worker
resumes that job (`adopt`); any other claim whose lease ran out (its worker
died 60 s ago) is failed and the statement claimed afresh. Every step that
proves or labels the clip fails closed: the render stops, the statement goes
back to `text_approved`, and no clip is registered.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
from sqlalchemy import select

from pipeline.domain import ClipEvent, ClipState, Event, Role, State
from pipeline.domain.policy import check_voice_renders
from pipeline.errors import ConsentError, ProvenanceError, TransitionError, VoxgateError
from pipeline.domain.serials import clip_serial
from pipeline.provenance.credentials import load_identity
from pipeline.provenance.presence import DEFAULT_EMBED_THRESHOLD
from pipeline.services.clip_provenance import clip_provenance
from pipeline.services.copies import (
    MASTER_RATE,
    PREMASTER,
    check_marks_in,
    export_signed,
    mark_serial,
    payload_mark,
    read_premaster,
    write_premaster,
)
from pipeline.services.review import require_text_approved
from pipeline.services.statements import clip_transition, get_statement, transition
from pipeline.services.tools import Tools
from pipeline.services.voices import current_consent, get_voice, model_ref
from pipeline.services.workspace import Workspace, utcnow
from pipeline.store.models import ClipFileRow, ClipRow, StatementRow
from pipeline.store.scratch import job_folder
from pipeline.synth.base import ModelRef

log = logging.getLogger(__name__)

LEASE: Final = timedelta(seconds=60)  # a render whose worker has not renewed its claim for this long is reclaimed
RENEW_EVERY_S: Final = 10.0  # how often a rendering worker renews its lease
STALE_CLAIM: Final = timedelta(minutes=30)  # a claim with no lease (made by an older voxgate) is taken as crashed after this
_PROCESS_TAG: Final = secrets.token_hex(4)  # tells apart two processes that got the same pid
DEFAULT_MAX_WER: Final = 0.25
#: The speech-recognition gate decodes greedily: it checks the approved words against a clean synthetic voice,
#: where a wider beam heard no better (bench_render's 64 s statement: WER 0.013 greedy, 0.027 with 5 beams)
#: and cost 1.4x the time.
GATE_BEAM_SIZE: Final = 1

Progress = Callable[[str], None]
"""Called with a short description as each render step starts."""

STEPS: Final = ("claim", "synthesise", "loudness", "disclosure", "watermark", "export", "quality", "register")


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
    worker: str  # the process holding the claim's lease


@dataclass(frozen=True)
class RenderResult:
    statement_id: int
    clip_id: int
    figures: dict[str, Any]


@dataclass(frozen=True)
class Produced:
    """A produced render, stored and ready to register: the files' digests and sizes, and what it measured."""

    figures: dict[str, Any]
    settings: dict[str, Any]
    labels: dict[str, Any]
    digests: dict[str, str]  # format (and the premaster) -> sha256 in the file store
    sizes: dict[str, int]


def worker_id() -> str:
    """This process, as the holder of a render claim: host, process id and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{_PROCESS_TAG}"


def job_of(holder: str | None) -> str | None:
    """The render job a claim's holder runs (`<worker>/<job id>`), or None for a render outside the job queue."""
    return holder.rpartition("/")[2] if holder and "/" in holder else None


def _same_job(held: str | None, holder: str) -> bool:
    return job_of(held) is not None and job_of(held) == job_of(holder)


def _claim_lapsed(clip: ClipRow | None, statement: StatementRow, now: datetime) -> bool:
    """Whether a `rendering` statement's worker is taken as dead: its lease ran out (or, without one, it is stale)."""
    if clip is None or clip.lease_until is None:
        return now - statement.updated_at > STALE_CLAIM
    return now > clip.lease_until


def rendering_clips(s: Any, statement_ids: list[int] | None = None) -> dict[int, ClipRow]:
    """The claim (clip being rendered) of each statement being rendered, of `statement_ids` or of all."""
    query = select(ClipRow).where(ClipRow.state == ClipState.RENDERING.value)
    if statement_ids is not None:
        query = query.where(ClipRow.statement_id.in_(statement_ids))
    return {c.statement_id: c for c in s.scalars(query)}


def claimable(ws: Workspace, now: datetime) -> list[int]:
    """Statements waiting to be rendered, plus renders whose worker died (lease run out)."""
    with ws.sessions() as s:
        rows = list(s.scalars(select(StatementRow).where(
            StatementRow.state.in_([State.TEXT_APPROVED.value, State.RENDERING.value])).order_by(StatementRow.id)))
        held = rendering_clips(s, [r.id for r in rows if r.state == State.RENDERING.value])
        return [r.id for r in rows
                if r.state == State.TEXT_APPROVED.value or _claim_lapsed(held.get(r.id), r, now)]


def _claim(ws: Workspace, statement_id: int, *, actor: str | None, now: datetime,
           worker: str | None = None) -> tuple[int, RenderJob]:
    """Check the gates and move the statement to `rendering` under `worker`'s lease; reserve the clip serial.

    A claim its own render job already holds (made before its worker died, or before the job's claim step
    was recorded) is taken over by `worker` as it stands: the same clip, nothing claimed twice.
    """
    worker = worker or worker_id()
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.REVIEWER, Role.SUBMITTER)
        s.get(StatementRow, statement_id, with_for_update=True)  # PostgreSQL: the row too, besides the write lock
        row = get_statement(s, statement_id)
        if row.state == State.RENDERING.value:
            held = rendering_clips(s, [row.id]).get(row.id)
            if held is not None and _same_job(held.worker, worker):
                held.worker, held.lease_until = worker, now + LEASE
                return held.id, _render_job(s, ws, row, held, who.name, worker)
            if _claim_lapsed(held, row, now):
                reason = (f"worker {held.worker} stopped renewing its lease" if held is not None and held.worker
                          else "stale claim")
                if held is not None:  # the fence: the old worker can no longer register this clip
                    clip_transition(ws, s, held, ClipEvent.FAILED, actor="system", now=now, data={"reason": reason})
                transition(ws, s, row, Event.RENDER_FAILED, actor="system", now=now,
                           data={"reason": reason, **({"clip": held.id} if held is not None else {})})
        require_text_approved(s, ws, row, now)  # consent and approvals, at this very moment
        transition(ws, s, row, Event.RENDER_CLAIMED, actor=who.name, now=now, data={"worker": worker})
        voice = get_voice(s, row.voice_id)
        check_voice_renders(voice.id, voice.state)  # an enrolled voice has no usable model until trained
        rev = row.revisions[-1]
        clip = ClipRow(statement_id=row.id, revision=rev.number, revision_sha256=rev.sha256, voice_id=voice.id,
                       model_sha256=voice.model_sha256, audio_sha256="", settings={}, figures={}, labels={},
                       state=ClipState.RENDERING.value, created_at=now, worker=worker, lease_until=now + LEASE)
        s.add(clip)
        s.flush()
        return clip.id, _render_job(s, ws, row, clip, who.name, worker)


def _render_job(s: Any, ws: Workspace, row: StatementRow, clip: ClipRow, actor: str, worker: str) -> RenderJob:
    """What the render of `clip` needs: its revision's text, the voice's model and the consent it renders under."""
    voice = get_voice(s, row.voice_id)
    consent = current_consent(s, row.voice_id)
    rev = next(r for r in row.revisions if r.number == clip.revision)
    return RenderJob(text=rev.text, language=row.language, voice=voice.id, voice_name=voice.name,
                     ref=model_ref(voice, ws), owner=consent.owner, consent_sha256=consent.record_sha256,
                     revision_sha256=rev.sha256, actor=actor, worker=worker)


def adopt(ws: Workspace, clip_id: int, worker: str, actor: str, now: datetime) -> RenderJob:
    """Take over the claim on `clip_id` for `worker` when it is held by the same render job (a worker resuming the
    job of one that died); `TransitionError` when the claim is no longer that job's."""
    with ws.transaction() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is None or clip.state != ClipState.RENDERING.value or not (
                clip.worker == worker or _same_job(clip.worker, worker)):
            raise TransitionError(f"Clip {clip_id}'s render is no longer this job's "
                                  f"({'gone' if clip is None else clip.state}, held by {clip.worker if clip else 'nobody'}).")
        clip.worker, clip.lease_until = worker, now + LEASE
        return _render_job(s, ws, get_statement(s, clip.statement_id), clip, actor, worker)


def renew_lease(ws: Workspace, clip_id: int, worker: str, now: datetime) -> str | None:
    """Extend `worker`'s lease on its render; returns why it cannot (the claim was taken over), else None."""
    with ws.transaction() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is None or clip.state != ClipState.RENDERING.value or clip.worker != worker:
            return (f"clip {clip_id} is no longer this worker's render "
                    f"({'gone' if clip is None else clip.state}, held by {clip.worker if clip else 'nobody'})")
        clip.lease_until = max(clip.lease_until or now, now + LEASE)
    return None


def note_step(ws: Workspace, clip_id: int, worker: str, step: str) -> None:
    """Record the step `worker`'s render of `clip_id` is at, for whoever follows it from another machine."""
    with ws.transaction() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is not None and clip.state == ClipState.RENDERING.value and clip.worker == worker:
            clip.step = step


class LeaseKeeper:
    """Renews a render's lease in a background thread while the render runs, and notices if it was lost."""

    def __init__(self, ws: Workspace, clip_id: int, worker: str, *, every_s: float = RENEW_EVERY_S,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.ws, self.clip_id, self.worker, self.every_s, self.clock = ws, clip_id, worker, every_s, clock
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-clip-{clip_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.lost = renew_lease(self.ws, self.clip_id, self.worker, self.clock())
            except VoxgateError as exc:  # a busy or briefly unreachable database: try again at the next beat
                log.warning("could not renew the lease on clip %s: %s", self.clip_id, exc)
            if self.lost:
                return

    def check(self, statement_id: int) -> None:
        if self.lost:
            raise TransitionError(f"Statement {statement_id}'s render was taken over by another worker ({self.lost}); "
                                  "this worker's result was discarded.")

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def render_statement(ws: Workspace, statement_id: int, tools: Tools, *, actor: str | None, now: datetime,
                     progress: Progress = lambda _step: None, worker: str | None = None) -> RenderResult:
    """Claim, synthesise, produce and register the render of `statement_id` in this process (a render job's steps)."""
    progress("claim")
    worker = worker or worker_id()
    clip_id, job = _claim(ws, statement_id, actor=actor, now=now, worker=worker)
    try:
        synthesised = synthesise(ws, clip_id, statement_id, job, tools, progress=progress)
        produced = produce(ws, clip_id, statement_id, job, tools, synthesised, now=now, progress=progress)
        register(ws, statement_id, clip_id, produced, actor=job.actor, now=now, worker=worker, progress=progress)
    except BaseException as exc:
        _release_claim(ws, statement_id, clip_id, failure_reason(exc), now=now, worker=worker)
        raise
    return RenderResult(statement_id, clip_id, produced.figures)


@contextmanager
def _leased(ws: Workspace, clip_id: int, statement_id: int, job: RenderJob,
            progress: Progress) -> Iterator[tuple[Progress, Path]]:
    """A part of a render under the claim's lease, in a job folder: (its step callback, the folder). The callback
    stops the render at the next stage once another worker has taken the claim over."""
    with LeaseKeeper(ws, clip_id, job.worker) as lease, job_folder(ws.home, "render") as tmp:

        def step(name: str) -> None:
            lease.check(statement_id)
            note_step(ws, clip_id, job.worker, name)
            progress(name)

        yield step, tmp


@dataclass(frozen=True)
class Synthesised:
    """A render's first part, checkpointed: the premaster in the file store, and what the rest needs of it."""

    premaster: str  # sha256 of the premaster (at loudness, with the disclosure, presence-marked)
    figures: dict[str, Any]  # of the speech, the engine and the disclosure
    timeline: list[dict[str, Any]]  # the sentences, in the premaster's seconds: what captions are timed from
    disclosure_text: str
    announcer: dict[str, Any] | None
    speech: tuple[int, int]  # where the speech is in the premaster, in samples: what the recogniser hears


#: The recogniser's verdict on a clip's speech, begun by `synthesise` and awaited by `produce` in the same process
#: (a produce resumed elsewhere hears the speech in the stored premaster instead).
_HEARING: Final[dict[int, Future[dict[str, Any]]]] = {}


def synthesise(ws: Workspace, clip_id: int, statement_id: int, job: RenderJob, tools: Tools, *,
               progress: Progress = lambda _step: None) -> Synthesised:
    """Synthesis, loudness, the audible disclosure and the presence watermark: the premaster, stored
    content-addressed (a repeated step stores the same blob again, harmlessly). Speech recognition of the
    synthesised speech starts here and runs on beside `produce`, which awaits its verdict. Nothing is registered."""
    from pipeline.audio.loudness import normalise
    from pipeline.audio.mix import join_with_timeline, resample
    from pipeline.synth.text import normalise_for_speech, split_sentences

    cfg = ws.config.render
    lang = job.language
    with _leased(ws, clip_id, statement_id, job, progress) as (step, tmp):
        step("synthesise")
        written = split_sentences(job.text, lang)
        sentences = [normalise_for_speech(x, lang, names=ws.config.urdu_names) for x in written]
        engine = tools.engine(job.ref)
        chunks = engine.synthesize(sentences)
        joined, spans = join_with_timeline(chunks, engine.sample_rate, pause_s=cfg.sentence_pause_s)
        speech = resample(joined, engine.sample_rate, MASTER_RATE)

        # Speech recognition runs beside loudness, disclosure, marking and export: it hears the words as
        # synthesised (loudness and the inaudible marks change none). `produce` awaits its verdict.
        heard = _pool().submit(_asr_gate, tools, speech, job.text, lang, ws.config.recognisers)
        try:
            step("loudness")
            speech = normalise(speech, MASTER_RATE, target_lufs=cfg.target_lufs, true_peak_dbtp=cfg.true_peak_dbtp)

            step("disclosure")
            audio, speech_offset, text, announcer = _with_disclosure(ws, job, tools, speech)
            offset = speech_offset / MASTER_RATE
            timeline = [{"start": round(a + offset, 3), "end": round(b + offset, 3), "text": t}
                        for t, span in zip(written, spans) if span is not None for a, b in [span]]

            step("watermark")
            # Every recipient's copy is marked from the premaster, the render's own too (`produce`).
            premaster = write_premaster(tools.presence_mark().embed(audio, MASTER_RATE), tmp / "premaster.wav")
            stored = ws.files.put(premaster)
        except BaseException:
            heard.result()  # the recogniser's verdict first: a failed gate is the reason to report
            raise
        _HEARING[clip_id] = heard
        figures = {"speech_s": round(len(speech) / MASTER_RATE, 3), "sentences": len(sentences),
                   "disclosure": cfg.disclosure, "announcer": announcer.description if announcer else None,
                   "engine": engine.name, "device": engine.device}
        return Synthesised(stored, figures, timeline, text, announcer.as_dict() if announcer else None,
                           (speech_offset, speech_offset + len(speech)))


def _with_disclosure(ws: Workspace, job: RenderJob, tools: Tools,
                     speech: np.ndarray) -> tuple[np.ndarray, int, str, Any]:
    """The speech with the audible disclosure where the workspace puts it: (audio, where the speech starts in it
    in samples, the disclosure's text, its announcer), or the speech alone when the disclosure is off."""
    from pipeline.audio.loudness import normalise
    from pipeline.audio.mix import concat, resample
    from pipeline.provenance.disclosure import disclosure_text
    from pipeline.services import announcers

    cfg = ws.config.render
    if cfg.disclosure == "none":
        return speech, 0, "", None
    with ws.sessions() as s:
        announcer = announcers.choose(ws, s, job.language, job.voice)
    text = disclosure_text(job.language, owner=job.owner, organisation=ws.config.organisation,
                           templates=cfg.disclosure_texts or None)

    def speak() -> np.ndarray:
        spoken, spoken_rate = announcers.speak(announcer, text, tools)
        return normalise(resample(spoken, spoken_rate, MASTER_RATE), MASTER_RATE,
                         target_lufs=cfg.target_lufs, true_peak_dbtp=cfg.true_peak_dbtp)

    spoken = tools.disclosure(repr((announcer.identity, text, cfg.target_lufs, cfg.true_peak_dbtp)), speak)
    before = [spoken] if cfg.disclosure in ("before", "both") else []
    after = [spoken] if cfg.disclosure in ("after", "both") else []
    audio = concat([*before, speech, *after], MASTER_RATE, gap_s=cfg.disclosure_gap_s)
    return audio, (len(spoken) + int(cfg.disclosure_gap_s * MASTER_RATE)) if before else 0, text, announcer


def produce(ws: Workspace, clip_id: int, statement_id: int, job: RenderJob, tools: Tools, synthesised: Synthesised,
            *, now: datetime, progress: Progress = lambda _step: None) -> Produced:
    """From the stored premaster: the payload watermark with the clip serial, final loudness and the signed exports,
    both marks read back from the Ogg Opus; the files stored content-addressed (a repeated step stores the same
    blobs again, harmlessly) once speech recognition heard the approved words. Nothing is registered."""
    heard = _HEARING.pop(clip_id, None)
    try:
        return _produce(ws, clip_id, statement_id, job, tools, synthesised, heard, now=now, progress=progress)
    finally:
        if heard is not None:
            heard.result()  # not left running: a failed gate is the reason to report, before any other


def _produce(ws: Workspace, clip_id: int, statement_id: int, job: RenderJob, tools: Tools, synthesised: Synthesised,
             heard: Future[dict[str, Any]] | None, *, now: datetime, progress: Progress) -> Produced:
    from pipeline.provenance.labels import ClipLabels, ai_notices

    cfg = ws.config.render
    lang = job.language
    with _leased(ws, clip_id, statement_id, job, progress) as (step, tmp):
        step("export")
        premaster_file = ws.files.open_checked(synthesised.premaster)
        premaster = read_premaster(premaster_file)
        if heard is None:  # resumed in another process than `synthesise`: hear the speech in the premaster
            start, end = synthesised.speech
            heard = _pool().submit(_asr_gate, tools, premaster[start:end], job.text, lang, ws.config.recognisers)
        presence = tools.presence_mark()
        mark = payload_mark(ws)
        # Both marks are read where it is hardest: from the whole Ogg Opus export (a messaging app's recompression
        # of the final samples), the presence mark at the embedding threshold; the payload right after embedding too.
        audio, marks = mark_serial(premaster, clip_serial(clip_id), presence, mark,
                                   target_lufs=cfg.target_lufs, true_peak_dbtp=cfg.true_peak_dbtp, read_back=False)
        of_speech = synthesised.figures
        figures: dict[str, Any] = {  # in the order the review table lists them: lengths and levels first
            "duration_s": round(len(audio) / MASTER_RATE, 3), "speech_s": of_speech["speech_s"],
            "sentences": of_speech["sentences"], "integrated_lufs": marks["integrated_lufs"],
            "true_peak_dbtp": marks["true_peak_dbtp"], **of_speech}
        notices = ai_notices(lang, owner=job.owner, organisation=ws.config.organisation)
        labels = ClipLabels(
            clip_id=str(clip_id), statement_id=statement_id, voice_id=job.voice, voice_name=job.voice_name,
            organisation=ws.config.organisation, language=lang, created_at=now.isoformat(),
            ai_notice=notices["en"], local_notice=next((v for k, v in notices.items() if k != "en"), ""),
        )
        settings = {
            "engine": job.ref.engine, "model_sha256": job.ref.sha256, "sample_rate": MASTER_RATE,
            "target_lufs": cfg.target_lufs, "true_peak_dbtp": cfg.true_peak_dbtp,
            "sentence_pause_s": cfg.sentence_pause_s, "disclosure": cfg.disclosure,
            "disclosure_text": synthesised.disclosure_text, "announcer": synthesised.announcer,
            "consent_sha256": job.consent_sha256, "revision_sha256": job.revision_sha256,
            "timeline": synthesised.timeline, "ai_label": notices,
        }
        manifest = clip_provenance(ws, clip_id, statement_id, voice=job.voice, voice_name=job.voice_name,
                                   language=job.language, consent_sha256=job.consent_sha256,
                                   revision_sha256=job.revision_sha256, settings=settings, now=now).manifest()

        def check_ogg(ogg: Path) -> None:  # the lossy export a messaging app will carry must still carry both marks
            figures.update(check_marks_in(ogg, clip_id, presence, mark, "Ogg Opus export",
                                          presence_threshold=DEFAULT_EMBED_THRESHOLD))

        files = export_signed(audio, tmp, f"clip-{clip_id}", labels, manifest, load_identity(ws.c2pa_dir),
                              check_ogg=check_ogg)
        step("quality")
        figures.update(heard.result())  # fail closed: nothing is stored unless the recogniser heard the approved text
        figures["payload_strength"] = marks["payload_strength"]  # each recipient's copy is marked as strongly
        digests = {fmt: ws.files.put(path) for fmt, path in files.items()}
        sizes = {fmt: path.stat().st_size for fmt, path in files.items()}
        return Produced(figures, settings, labels.as_tags(), {**digests, PREMASTER: synthesised.premaster},
                        {**sizes, PREMASTER: premaster_file.stat().st_size})


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """The process's threads for render stages that run beside another (speech recognition beside export)."""
    return ThreadPoolExecutor(2, thread_name_prefix="render")


def _asr_gate(tools: Tools, speech: np.ndarray, text: str, lang: str, configured: tuple = ()) -> dict[str, Any]:
    """Speech recognition of the message against the approved text (where a recogniser covers the language)."""
    from pipeline.quality.recognisers import error_rate, recogniser_for

    spec = recogniser_for(lang, configured)
    if spec is None:
        return {"wer": None, "asr": f"no recogniser covers {lang!r}: the audio reviewer must listen (--listened)"}
    recogniser = tools.asr(spec, beside=True)  # one thread: it runs beside the rest of the render
    transcript = recogniser.transcribe(speech, MASTER_RATE, language=lang, beam_size=GATE_BEAM_SIZE)
    rate = error_rate(spec.measure, text, transcript.text, lang)
    if rate > spec.threshold:
        raise ProvenanceError(
            f"Quality gate: the speech recogniser heard {transcript.text!r}, a {spec.measure.upper()} of {rate:.2f} "
            f"against the approved text (limit {spec.threshold:g}); the clip was not registered. Check the voice model."
        )
    return {spec.measure: round(rate, 3), "asr": spec.label}


def register(ws: Workspace, statement_id: int, clip_id: int, produced: Produced, *, actor: str, now: datetime,
             worker: str, progress: Progress = lambda _step: None) -> None:
    """Register the produced clip as the statement's draft, if the claim is still `worker`'s and consent and
    approvals still hold. Registering it again (a job resumed after its register step) changes nothing."""
    progress("register")
    note_step(ws, clip_id, worker, "register")
    with ws.transaction() as s:
        row = get_statement(s, statement_id)
        clip = s.get(ClipRow, clip_id)
        ours = clip.worker == worker or _same_job(clip.worker, worker)  # this render job, resumed by another worker
        if clip.state == ClipState.DRAFT.value and ours and clip.audio_sha256 == produced.digests["wav"]:
            return  # registered already, before the worker that did it died
        if ours:
            clip.worker = worker
        if row.state == State.RENDERING.value and (clip.state != ClipState.RENDERING.value or clip.worker != worker):
            raise TransitionError(f"Statement {statement_id}'s render was taken over by another worker while this one "
                                  "rendered (its lease ran out); this worker's result was discarded.")
        if row.state != State.RENDERING.value or clip.state != ClipState.RENDERING.value:
            raise ConsentError(f"Statement {statement_id} left the render queue while rendering ({row.state}); "
                               "the clip was discarded.")
        # Consent may have been revoked while we rendered: check again before anything is registered.
        require_text_approved(s, ws, row, now)
        digests = dict(produced.digests)
        clip.premaster_sha256 = digests.pop(PREMASTER)  # kept, never handed out: see services.deliveries
        for fmt, digest in digests.items():
            s.add(ClipFileRow(clip_id=clip_id, format=fmt, sha256=digest, size=produced.sizes[fmt]))
        clip.audio_sha256, clip.figures = digests["wav"], produced.figures
        clip.settings, clip.labels = produced.settings, produced.labels
        clip_transition(ws, s, clip, ClipEvent.REGISTERED, actor=actor, now=now, data={"audio_sha256": digests["wav"]})
        transition(ws, s, row, Event.RENDERED, actor=actor, now=now,
                   data={"clip": clip_id, "audio_sha256": digests["wav"], **produced.figures})


def failure_reason(exc: BaseException) -> str:
    """Why a render stopped, in one line for the audit log and the job's outcome."""
    return (str(exc) if isinstance(exc, VoxgateError) else f"{type(exc).__name__}: {exc}")[:500]


def _release_claim(ws: Workspace, statement_id: int, clip_id: int, reason: str, *, now: datetime,
                   worker: str) -> None:
    """Put the statement back in the queue after a failed render; never leave a half-registered clip.

    Only while the claim is still this worker's (or its render job's): a render taken over is theirs now.
    """
    with ws.transaction() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is None or clip.state != ClipState.RENDERING.value or not (
                clip.worker == worker or _same_job(clip.worker, worker)):
            return
        clip_transition(ws, s, clip, ClipEvent.FAILED, actor="system", now=now, data={"reason": reason})
        row = get_statement(s, statement_id)
        if row.state == State.RENDERING.value:
            transition(ws, s, row, Event.RENDER_FAILED, actor="system", now=now, data={"reason": reason, "clip": clip_id})
