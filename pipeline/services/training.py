"""Fine-tuning a voice on its own enrollment, and measuring the result: the service behind `voxgate voice train|test`.

Training data is exactly the voice's enrolled recordings: every file must lie
in the workspace and hash to the sha256 the enrollment recorded (checked on
the bytes the trainer reads), or training is refused. The fine-tuned model is
written as a slim checkpoint whose sha256 goes into the voice, next to a JSON
record of the run (base, data hashes, steps, losses); the change is audited
as `voxgate.voice.trained`. Runs resume: the run folder is named after the
base and the data, so the same command after an interruption continues from
the last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipeline.consent.script import base_language
from pipeline.domain import Role, canonical_json, check_consent_in_force
from pipeline.errors import ConsentError, InputError
from pipeline.synth.base import model_digest
from pipeline.services.voices import get_voice, model_ref, signed_consent
from pipeline.services.workspace import Workspace, utcnow
from pipeline.store.files import atomic_output
from pipeline.train.checkpoint import SLIM_CONFIG, BaseModel, latest_checkpoint, resolve_base
from pipeline.train.dataset import DatasetReport, Recording, prepare

logger = logging.getLogger(__name__)

DEFAULT_STEPS: Final = 2000
DEFAULT_BATCH_SIZE: Final = 8
RECORD_FILE: Final = "training.json"
_LOSS_LOG: Final = "losses.jsonl"
_LOSS_POINTS: Final = 200
"""Losses kept in the record: about this many evenly spaced steps, whatever the run's length."""

MAX_WER: Final = 0.25
"""Same bar as the bundled recogniser's render gate (`pipeline.quality.recognisers.BUILTIN_THRESHOLD`); a
recogniser configured in voxgate.toml brings its own measure and threshold."""

MIN_SIMILARITY: Final = 0.75
"""resemblyzer cosine: the same speaker scores about 0.8-0.95, different speakers mostly under 0.75."""

TEST_SENTENCES: Final[Mapping[str, tuple[str, ...]]] = {
    "en": (
        "Thank you for listening to this message.",
        "The hearing has been moved to Tuesday, the fourteenth of May.",
        "I ask every journalist to keep asking questions, and never to stop.",
        "Please share this statement only as it is, with its label.",
        "We will answer anger with facts, with patience and with the law.",
    ),
    # the same five, as an Urdu speaker would write them (a date in digits: spoken through the normalisation)
    "ur": (
        "یہ پیغام سننے کا شکریہ۔",
        "سماعت اب منگل، 14 مئی کو ہو گی۔",
        "میں ہر صحافی سے کہتا ہوں کہ سوال پوچھتے رہیں اور کبھی نہ رکیں۔",
        "یہ بیان صرف جیسا ہے ویسا، اپنے لیبل کے ساتھ آگے بھیجیں۔",
        "ہم غصے کا جواب حقائق، صبر اور قانون سے دیں گے۔",
    ),
}
"""What `voxgate voice test` renders, by the voice's language."""


@dataclass(frozen=True)
class TrainingStep:
    """One optimiser step, for a progress display."""

    step: int
    total: int
    loss: float
    loss_name: str
    losses: Mapping[str, float]


Progress = Callable[[TrainingStep], None]


@dataclass(frozen=True)
class TrainingRun:
    """A finished fine-tuning run: the slim model, its record and the figures worth printing."""

    run_dir: Path
    model_path: Path
    config_path: Path
    model_sha256: str
    model_bytes: int
    steps: int
    resumed_from: int | None
    device: str
    mean_step_s: float | None
    dataset: DatasetReport
    record_path: Path


@dataclass(frozen=True)
class SentenceFigures:
    """Quality figures for one test sentence."""

    sentence: str
    duration_s: float
    wer: float | None
    """The recogniser's error rate (WER, or CER where it is configured so); None when none covers the language."""
    similarity: float | None
    """None when the voice has no enrolled recordings to compare with."""
    lufs: float | None
    """None for clips shorter than one loudness gating block (0.4 s)."""


@dataclass(frozen=True)
class VoiceTest:
    """The result of `evaluate_voice`: per-sentence figures, their means and the verdict."""

    voice_id: str
    language: str
    device: str
    sentences: list[SentenceFigures]
    mean_wer: float | None
    mean_similarity: float | None
    passed: bool
    state: str
    recogniser: str | None = None
    """The label of the recogniser that measured the error rate; None when none covers the language."""
    measure: str = "wer"
    max_error: float = MAX_WER


def fine_tune(
    recordings: Sequence[Recording],
    base: BaseModel | str,
    out_dir: Path,
    *,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    language: str = "en",
    progress: Progress | None = None,
) -> TrainingRun:
    """Fine-tune `base` on `recordings` in `out_dir`, resuming a run already there.

    Refuses (ConsentError) any recording whose bytes do not hash to its
    sha256 before a single step is trained.
    """
    if steps < 0:
        raise InputError(f"--steps must be zero or more, got {steps}.")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}.")
    if isinstance(base, str):
        base = resolve_base(base)
    trainer = _trainer_for(base)
    trainer.check_data(base, [r.transcript for r in recordings], language)  # before a file is written
    dataset = prepare(recordings, out_dir / "data", trainer.clip_limits(base), language=language)
    sources = sorted({clip.source_sha256 for clip in dataset.clips})
    loss_log = out_dir / _LOSS_LOG
    if latest_checkpoint(out_dir) is None:  # a fresh run: losses of an abandoned one do not belong to it
        loss_log.unlink(missing_ok=True)
    every = max(1, steps // _LOSS_POINTS)

    def on_step(step: int, losses: Mapping[str, float]) -> None:
        if step % every == 0 or step == steps:
            with loss_log.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": step, **{k: round(v, 5) for k, v in losses.items()}}) + "\n")
        if progress is not None:
            name = trainer.MAIN_LOSS
            progress(TrainingStep(step, steps, losses.get(name, float("nan")), name, losses))

    voxgate = {"base_sha256": base.sha256, "data_sha256": sources, "language": language}
    model_path, result = trainer.fine_tune(base, dataset, out_dir, steps=steps, batch_size=batch_size,
                                           language=language, on_step=on_step, voxgate=voxgate)
    sha = model_digest(model_path, model_path.with_name(SLIM_CONFIG))  # every file the engine reads
    record = {
        "base": {"path": str(base.checkpoint), "sha256": base.sha256, "kind": base.kind},
        "data": dataset.to_dict(),
        "steps": result.steps,
        "resumed_from_step": result.resumed_from,
        "batch_size": batch_size,
        "language": language,
        "device": result.device,
        "mean_step_s": None if result.mean_step_s is None else round(result.mean_step_s, 4),
        "losses": _losses(loss_log, result.steps),
        "model": {"file": model_path.name, "sha256": sha, "bytes": model_path.stat().st_size},
    }
    record_path = out_dir / RECORD_FILE
    with atomic_output(record_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return TrainingRun(out_dir, model_path, model_path.with_name(SLIM_CONFIG), sha, model_path.stat().st_size,
                       result.steps, result.resumed_from, result.device, result.mean_step_s, dataset, record_path)


def _trainer_for(base: BaseModel) -> Any:
    """The training module for the base's kind (each has clip_limits, check_data, fine_tune and MAIN_LOSS)."""
    if base.kind == "vits":
        from pipeline.train import vits

        return vits
    if base.kind == "xtts":
        from pipeline.train import xtts

        return xtts
    raise InputError(f"voxgate fine-tunes VITS and XTTS models; the base {base.checkpoint} is a {base.kind} model.")


def _losses(loss_log: Path, last_step: int) -> list[dict[str, float]]:
    """Logged losses up to `last_step`, one entry per step; a resumed run's redone steps replace the old ones."""
    if not loss_log.is_file():
        return []
    by_step: dict[int, dict[str, float]] = {}
    for line in loss_log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["step"] <= last_step:
            by_step[entry["step"]] = entry
    return [by_step[step] for step in sorted(by_step)]


def run_id(base: BaseModel, recordings: Sequence[Recording], batch_size: int) -> str:
    """Names a run by what determines it, so repeating a command finds (and resumes) its run."""
    key = {"base": base.sha256, "data": sorted(r.sha256.lower() for r in recordings), "batch_size": batch_size}
    return hashlib.sha256(canonical_json(key)).hexdigest()[:16]


def train_voice(
    ws: Workspace,
    voice_id: str,
    base: str,
    *,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actor: str | None,
    clock: Callable[[], datetime] = utcnow,
    progress: Progress | None = None,
) -> TrainingRun:
    """Fine-tune `base` on the voice's enrolled recordings and point the voice at the result.

    Training takes hours, so the time of the audit event comes from `clock`
    when the model is attached, not from the start of the command. Consent
    is checked before training and again before the voice changes.
    """
    from pipeline.services.recordings import enrolled_recordings

    with ws.sessions() as s:  # read-only checks; training runs outside any transaction
        who = ws.actor(s, actor, Role.ADMIN).name
        voice = get_voice(s, voice_id)
        _require_consent(s, ws, voice_id, clock())
        language = voice.languages[0]
    recordings = enrolled_recordings(ws, voice_id)
    if not recordings:
        raise ConsentError(f"Voice {voice_id} has no enrolled recordings; enrol the owner's recordings first.")
    home = ws.home.resolve()
    for recording in recordings:
        if not recording.path.resolve().is_relative_to(home):
            raise ConsentError(
                f"{recording.path} is not covered by the voice's enrollment: it lies outside the workspace "
                f"{home}; enrolled recordings are kept in the workspace."
            )
    base_model = resolve_base(base)
    voice_dir = ws.voice_dir(voice_id)
    run_dir = voice_dir / "training" / run_id(base_model, recordings, batch_size)
    run = fine_tune(recordings, base_model, run_dir, steps=steps, batch_size=batch_size, language=language,
                    progress=progress)
    with ws.transaction() as s:
        voice = get_voice(s, voice_id)
        _require_consent(s, ws, voice_id, clock())  # it may have been revoked while the model trained
        voice.engine = "coqui"
        voice.model_ref = str(run.model_path.relative_to(voice_dir))
        voice.config_ref = str(run.config_path.relative_to(voice_dir))
        voice.model_sha256 = run.model_sha256
        voice.state = "trained"
        ws.record(s, "voxgate.voice.trained", actor=who, subject=voice_id, now=clock(), data={
            "model_sha256": run.model_sha256, "base_sha256": base_model.sha256, "base_kind": base_model.kind,
            "steps": run.steps, "data_sha256": sorted({c.source_sha256 for c in run.dataset.clips}),
            "clips": len(run.dataset.clips), "dropped": run.dataset.dropped_by_reason(),
            "record": str(run.record_path.relative_to(voice_dir)),
        })
    return run


def _require_consent(s: Any, ws: Workspace, voice_id: str, now: datetime) -> None:
    check_consent_in_force(signed_consent(s, ws, voice_id), voice_id, now)


def evaluate_voice(
    ws: Workspace,
    voice_id: str,
    *,
    actor: str | None,
    clock: Callable[[], datetime] = utcnow,
    sentences: Sequence[str] | None = None,
) -> VoiceTest:
    """Render `sentences` (default: TEST_SENTENCES in the voice's language) in the voice and measure them.

    Audio is kept in memory, never written; sentences are spoken as a render speaks them (numbers in words).

    Figures: the error rate of speech recognition against the text (the
    recogniser that covers the language, as the render gate picks it: one
    configured in voxgate.toml, else the bundled English one; its measure and
    threshold), resemblyzer similarity to the voice's enrolled recordings,
    duration and loudness. The run is audited as `voxgate.voice.tested`; a
    `trained` voice under the threshold and at MIN_SIMILARITY becomes `ready`.
    """
    from pipeline.audio.loudness import MIN_DURATION_S, measure
    from pipeline.quality.recognisers import check_pinned, error_rate, load_transcriber, recogniser_for
    from pipeline.services.recordings import enrolled_recordings
    from pipeline.synth import load_engine, normalise_for_speech

    with ws.sessions() as s:
        who = ws.actor(s, actor, Role.ADMIN, Role.REVIEWER).name
        voice = get_voice(s, voice_id)
        _require_consent(s, ws, voice_id, clock())
        ref, language = model_ref(voice, ws), voice.languages[0]
    if sentences is None:
        if base_language(language) not in TEST_SENTENCES:
            raise InputError(f"voxgate has no test sentences in {language!r} (only {', '.join(TEST_SENTENCES)}); "
                             "the voice cannot be tested yet.")
        sentences = TEST_SENTENCES[base_language(language)]
    engine = load_engine(ref)
    audio = engine.synthesize([normalise_for_speech(x, language) for x in sentences])
    rate = engine.sample_rate
    spec = recogniser_for(language, ws.config.recognisers)
    transcriber = None
    if spec is not None:
        check_pinned(spec)
        transcriber = load_transcriber(spec)
    limit = spec.threshold if spec is not None else MAX_WER
    similarities = _similarities(audio, rate, [r.path for r in enrolled_recordings(ws, voice_id)])
    figures = []
    for sentence, clip, similarity in zip(sentences, audio, similarities, strict=True):
        duration = clip.size / rate
        wer = None
        if transcriber is not None:
            heard = transcriber.transcribe(clip, rate, language=language).text if clip.size else ""
            wer = error_rate(spec.measure, sentence, heard, language)
        lufs = measure(clip, rate).integrated_lufs if duration >= MIN_DURATION_S else None
        figures.append(SentenceFigures(sentence, duration, wer, similarity,
                                       lufs if lufs is None or np.isfinite(lufs) else None))
    mean_wer = _mean([f.wer for f in figures])
    mean_similarity = _mean([f.similarity for f in figures])
    passed = (mean_wer is not None and mean_wer <= limit
              and mean_similarity is not None and mean_similarity >= MIN_SIMILARITY)
    with ws.transaction() as s:
        voice = get_voice(s, voice_id)
        if passed and voice.state == "trained":
            voice.state = "ready"
        state = voice.state
        ws.record(s, "voxgate.voice.tested", actor=who, subject=voice_id, now=clock(), data={
            "model_sha256": ref.sha256, "device": engine.device, "mean_wer": mean_wer,
            "recogniser": spec.label if spec is not None else None,
            "mean_similarity": mean_similarity, "passed": passed, "state": state,
            "sentences": [{"duration_s": round(f.duration_s, 3), "wer": f.wer, "similarity": f.similarity,
                           "lufs": f.lufs} for f in figures],
        })
    return VoiceTest(voice_id, language, engine.device, figures, mean_wer, mean_similarity, passed, state,
                     spec.label if spec is not None else None, spec.measure if spec is not None else "wer", limit)


def _similarities(audio: Sequence[np.ndarray], rate: int, references: Sequence[Path]) -> list[float | None]:
    """resemblyzer cosine similarity of each clip to the speaker embedding of `references`."""
    if not references:
        return [None] * len(audio)
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)
    speaker = encoder.embed_speaker([preprocess_wav(path) for path in references])
    scores: list[float | None] = []
    for clip in audio:
        wav = preprocess_wav(clip, source_sr=rate) if clip.size else clip
        # preprocess_wav drops silence; a clip with no speech left has nothing to compare
        scores.append(round(float(np.dot(encoder.embed_utterance(wav), speaker)), 4) if wav.size else None)
    return scores


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(np.mean(present)), 4) if present else None
