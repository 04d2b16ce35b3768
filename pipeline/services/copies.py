"""One marked, labelled, signed copy of a clip's audio: the render's own, and each recipient's.

Render and delivery share these steps, so a recipient's copy is made and
checked exactly as the released clip was:

    premaster (presence-marked) → payload mark with a serial (read back) →
    final loudness pass → WAV / MP3 / Ogg Opus / M4A with AI labels and
    signed content credentials → both marks read from the Ogg Opus, the
    hardest of the files (the render's: the presence mark at its embedding
    threshold, from the whole file)

Every check fails closed: a copy whose marks do not read back is never written
under its final name, let alone registered or handed out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipeline.errors import ProvenanceError
from pipeline.provenance.credentials import can_embed, embed_credentials, write_sidecar
from pipeline.provenance.labels import ClipLabels
from pipeline.services.workspace import Workspace, watermark_secret

MASTER_RATE: Final = 48_000
AUDIO_FORMATS: Final = ("wav", "mp3", "ogg", "m4a")
TRUE_PEAK_TOLERANCE_DB: Final = 0.1  # meter differences between our 4x oversampler and a reader's
PREMASTER: Final = "premaster"  # the key of the premaster among a render's files


def write_premaster(audio: np.ndarray, path: Path) -> Path:
    """The premaster as 32-bit float WAV: marking a recipient's copy from it loses nothing."""
    import soundfile as sf

    sf.write(path, audio, MASTER_RATE, subtype="FLOAT")
    return path


def read_premaster(path: Path) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32")
    if rate != MASTER_RATE or audio.ndim != 1:
        raise ProvenanceError(f"The stored premaster {path.name} is not mono {MASTER_RATE} Hz; render the clip again.")
    return audio


def payload_mark(ws: Workspace) -> Any:
    """The workspace's keyed payload mark (its key derived from the workspace secret)."""
    from pipeline.provenance.payload import PayloadMark, derive_key

    return PayloadMark(derive_key(watermark_secret(ws)))


def mark_serial(premaster: np.ndarray, serial: int, presence: Any, mark: Any, *, target_lufs: float,
                true_peak_dbtp: float, read_back: bool = True,
                strength: float | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """The premaster with `serial` in its payload mark, at final loudness; true peak and both marks checked.

    The payload mark is read back right after embedding, and embedded stronger where it reads weakly
    (`embed_and_verify`); the figures keep the strength it took (`payload_strength`).

    Samples whose lossy file is read back for both marks (`check_marks_in`, a harder test of the same
    samples: the render's and every personal copy's) skip reading them here: `read_back=False` (the
    figures then lack the scores). A personal copy also passes `strength`, the one its clip's render
    took on the same premaster, and is embedded at once without the read-back after embedding.
    """
    from dataclasses import replace

    from pipeline.audio.loudness import normalise_measured
    from pipeline.provenance.payload import DEFAULT_MARGIN
    from pipeline.provenance.presence import DEFAULT_EMBED_THRESHOLD

    if strength is None:
        audio, embedded = mark.embed_and_verify(premaster, MASTER_RATE, serial)
        strength = embedded.strength
    else:
        audio = replace(mark, max_strength=strength).embed(premaster, MASTER_RATE, serial)
    # The marks add energy; the final limiter pass keeps the true-peak ceiling, and both marks are
    # detected again on exactly the samples that will be exported.
    audio, loud = normalise_measured(audio, MASTER_RATE, target_lufs=target_lufs, true_peak_dbtp=true_peak_dbtp)
    figures: dict[str, float] = {}
    if read_back:
        presence_score, found = read_marks(audio, MASTER_RATE, presence, mark)
        if presence_score < DEFAULT_EMBED_THRESHOLD:
            raise ProvenanceError(f"The presence watermark scored {presence_score:.2f} after the final loudness pass "
                                  f"(needs {DEFAULT_EMBED_THRESHOLD}); nothing was registered.")
        if found.payload != serial or found.confidence < DEFAULT_MARGIN:
            raise ProvenanceError(f"The payload watermark read {found.payload} (confidence {found.confidence:.1f}) "
                                  f"after the final loudness pass, not serial {serial}; nothing was registered.")
        figures = {"presence_score": round(float(presence_score), 4),
                   "payload_confidence": round(float(found.confidence), 1)}
    if loud.clipped_samples or loud.true_peak_dbtp > true_peak_dbtp + TRUE_PEAK_TOLERANCE_DB:
        raise ProvenanceError(
            f"Quality gate: true peak {loud.true_peak_dbtp:.2f} dBTP with {loud.clipped_samples} clipped samples "
            f"(ceiling {true_peak_dbtp} dBTP); nothing was registered."
        )
    return audio, {"integrated_lufs": round(loud.integrated_lufs, 2), "true_peak_dbtp": round(loud.true_peak_dbtp, 2),
                   "payload_strength": strength, **figures}


def read_marks(samples: np.ndarray, rate: int, presence: Any, mark: Any,
               presence_samples: np.ndarray | None = None) -> tuple[float, Any]:
    """(presence score, payload reading) of `samples` (the presence mark of `presence_samples` where given),
    the two detectors run at once (torch and numpy, two cores)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="presence") as pool:
        score = pool.submit(presence.detect, samples if presence_samples is None else presence_samples, rate)
        found = mark.detect(samples, rate)
        return score.result(), found


def export_signed(audio: np.ndarray, folder: Path, stem: str, labels: ClipLabels, manifest: Mapping[str, Any],
                  identity: Any, formats: tuple[str, ...] = AUDIO_FORMATS,
                  check_ogg: Callable[[Path], None] | None = None) -> dict[str, Path]:
    """Each of `formats` (every audio format by default), labelled and signed; Ogg (which cannot embed a
    manifest) gets an ``ogg.c2pa`` sidecar. `check_ogg` is called with the Ogg Opus file as soon as it
    is encoded, while the other formats are still being made; an error it raises fails the export.

    The formats are encoded at once, one thread each: the work is in ffmpeg
    processes and the C2PA library, so they spread over the machine's cores.
    Beside an Ogg, the M4A takes the Ogg's Opus packets instead of a second Opus encode of the same
    samples (`export.formats.remux_opus_to_m4a`), so the marks read back from the Ogg are the M4A's.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from pipeline.export.formats import ExportFormat, export_clip, remux_opus_to_m4a

    def seal_for(fmt: ExportFormat) -> Any:
        return (lambda path, fmt: embed_credentials(path, fmt.mime, manifest, identity)) if can_embed(fmt.mime) else None

    def one(fmt: ExportFormat) -> dict[str, Path]:
        made = {fmt.value: export_clip(audio, MASTER_RATE, fmt, folder / f"{stem}{fmt.extension}", labels,
                                       seal=seal_for(fmt))}
        if not can_embed(fmt.mime):  # Ogg: the manifest travels beside the file, and is stored and handed out with it
            made[f"{fmt.value}.c2pa"] = write_sidecar(made[fmt.value], fmt.mime, manifest, identity)
        return made

    def m4a_after(ogg: Future) -> dict[str, Path]:
        source = ogg.result()["ogg"]
        fmt = ExportFormat.M4A
        return {fmt.value: remux_opus_to_m4a(source, folder / f"{stem}{fmt.extension}", labels, seal=seal_for(fmt))}

    remux = "ogg" in formats and "m4a" in formats
    files: dict[str, Path] = {}
    with ThreadPoolExecutor(len(formats) + 1, thread_name_prefix="export") as pool:
        jobs = {f: pool.submit(one, ExportFormat(f)) for f in formats if not (remux and f == "m4a")}
        if remux:
            jobs["m4a"] = pool.submit(m4a_after, jobs["ogg"])
        if check_ogg is not None:
            ogg = jobs["ogg"]
            check = pool.submit(lambda: check_ogg(ogg.result()["ogg"]))
        for job in jobs.values():
            files.update(job.result())  # re-raises the first failure
        if check_ogg is not None:
            check.result()
    return files


def check_marks_in(path: Path, serial: int, presence: Any, mark: Any, what: str,
                   presence_excerpt_s: float | None = None, presence_threshold: float | None = None) -> dict[str, float]:
    """Both marks read from an encoded file (the lossy export a messaging app carries, a video's audio).

    `presence=None` reads the payload mark only: for a file encoded from the same samples as
    another whose presence mark was read already (a copy's video beside its Ogg Opus, the harder codec).
    `presence_excerpt_s` reads the presence mark from that many seconds in the middle of the file
    only: for a personal copy, whose premaster's presence mark its render read from a whole file
    made the same way (the payload, each copy's own, is always read from the whole file).
    `presence_threshold` (default: the detection threshold) is the score the presence mark must reach.
    """
    from pipeline.export.probe import decode
    from pipeline.provenance.presence import DEFAULT_PRESENCE_THRESHOLD

    samples, rate = decode(path)
    if presence is None:
        score, found = None, mark.detect(samples, rate)
    else:
        excerpt = samples
        if presence_excerpt_s is not None and len(samples) > presence_excerpt_s * rate:
            start = (len(samples) - int(presence_excerpt_s * rate)) // 2
            excerpt = samples[start:start + int(presence_excerpt_s * rate)]
        score, found = read_marks(samples, rate, presence, mark, presence_samples=excerpt)
    threshold = DEFAULT_PRESENCE_THRESHOLD if presence_threshold is None else presence_threshold
    if score is not None and score < threshold:
        raise ProvenanceError(f"The presence watermark scored {score:.2f} in the {what} (needs {threshold:g}); "
                              "nothing was registered.")
    if found.payload != serial:
        raise ProvenanceError(f"The payload watermark was not read back from the {what} "
                              f"(read {found.payload}, confidence {found.confidence:.1f}, expected {serial}).")
    return {"presence_score": None if score is None else round(float(score), 4),
            "payload_confidence": round(float(found.confidence), 1)}
