"""Derived exports of a released clip: MP4 videos in social shapes, and SRT / WebVTT captions.

They are made on first request from the registered WAV master, checked
(presence mark in the MP4's audio; content credentials signed and read back),
stored in the file store and registered as more files of the same clip, so
a second request serves the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from pipeline.errors import InputError, NotFoundError, ProvenanceError
from pipeline.store.scratch import job_folder
from pipeline.services.workspace import Workspace
from pipeline.store.models import ClipFileRow, ClipRow, StatementRow, VoiceRow

VIDEO_FORMATS: Final = ("mp4-square", "mp4-vertical", "mp4-landscape")
CAPTION_FORMATS: Final = ("srt", "vtt")
DERIVED_FORMATS: Final = VIDEO_FORMATS + CAPTION_FORMATS


@dataclass(frozen=True)
class ReleaseContext:
    """What every file made from a released clip carries: its labels and content credentials.

    The provenance holds the rest: voice, language and the render settings (with the sentence timeline).
    """

    labels: Any  # ClipLabels
    provenance: Any  # ClipProvenance: what the content credentials assert


def release_context(ws: Workspace, clip_id: int, now: datetime) -> ReleaseContext:
    """The labels and manifest of a registered clip, as its render wrote them (`now` dates the new file)."""
    from pipeline.services.clip_provenance import clip_provenance

    with ws.sessions() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is None:
            raise NotFoundError(f"No clip {clip_id}; list released clips with `voxgate clips list`.")
        statement = s.get(StatementRow, clip.statement_id)
        voice = s.get(VoiceRow, clip.voice_id)
        subject = {"voice": voice.id, "voice_name": voice.name, "language": statement.language,
                   "consent_sha256": clip.settings["consent_sha256"], "revision_sha256": clip.revision_sha256}
        labels = _labels(ws, clip, statement, voice)
        settings = dict(clip.settings)
    provenance = clip_provenance(ws, clip_id, statement.id, **subject, settings=settings, now=now)
    return ReleaseContext(labels, provenance)


def ensure_derived(ws: Workspace, clip_id: int, fmt: str, tools: Any, *, now: datetime,
                   progress: Callable[[float], None] | None = None) -> None:
    """Make and register `fmt` for a released clip unless it is registered already.

    `tools` (services.tools.Tools) lends the recogniser and the watermark model, loaded once per process.
    """
    if fmt not in DERIVED_FORMATS:
        raise InputError(f"{fmt!r} is not a video or caption format ({', '.join(DERIVED_FORMATS)}).")
    with ws.sessions() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is None:
            raise NotFoundError(f"No clip {clip_id}; list released clips with `voxgate clips list`.")
        if clip.state != "released" or any(f.format == fmt for f in clip.files):
            return  # the export's own checks refuse unreleased and revoked clips with the reason
        master = ws.files.open_checked(clip.audio_sha256)
    context = release_context(ws, clip_id, now)
    timeline = context.provenance.settings.get("timeline")
    if not timeline:
        raise ProvenanceError(f"Clip {clip_id} was rendered without a sentence timeline; render it again for video.")
    captions = _captions(master, timeline, context.provenance.language, tools)
    with job_folder(ws.home, "video") as tmp:
        dest = Path(tmp) / f"clip-{clip_id}.{'mp4' if fmt in VIDEO_FORMATS else fmt}"
        if fmt in CAPTION_FORMATS:
            from pipeline.export.captions import write_captions

            write_captions(captions, dest)
        else:
            _video(ws, context, master, dest, fmt, captions, tools, progress)
        digest = ws.files.put(dest)
        with ws.transaction() as s:
            row = s.get(ClipRow, clip_id)
            if not any(f.format == fmt for f in row.files):  # another request may have made it meanwhile
                s.add(ClipFileRow(clip_id=clip_id, format=fmt, sha256=digest, size=dest.stat().st_size))
                ws.record(s, "voxgate.clip.derived", actor="system", subject=clip_id,
                          data={"format": fmt, "sha256": digest}, now=now)


def _video(ws: Workspace, context: ReleaseContext, master: Path, dest: Path, fmt: str, captions: list, tools: Any,
           progress: Callable[[float], None] | None) -> None:
    from pipeline.export.cards import find_portrait
    from pipeline.export.probe import decode
    from pipeline.export.video import VIDEO_MIME, VideoShape, render_video
    from pipeline.provenance.credentials import embed_credentials, load_identity
    from pipeline.provenance.presence import DEFAULT_PRESENCE_THRESHOLD

    identity = load_identity(ws.c2pa_dir)
    render_video(master, dest, shape=VideoShape.from_format(fmt), labels=context.labels, captions=captions,
                 portrait=find_portrait(ws.voice_dir(context.provenance.voice_id)), progress=progress,
                 seal=lambda path: embed_credentials(path, VIDEO_MIME, context.provenance.manifest(), identity))
    score = tools.presence_mark().detect(*decode(dest))
    if score < DEFAULT_PRESENCE_THRESHOLD:
        raise ProvenanceError(f"The presence watermark was not detected in the {fmt} audio (score {score:.2f}).")


def _captions(master: Path, timeline: list[dict[str, Any]], lang: str, tools: Any) -> list:
    """Captions timed from the render's sentence boundaries, refined by the recogniser's word times."""
    from pipeline.export.captions import build_captions
    from pipeline.export.probe import decode
    from pipeline.quality.asr import supports

    words = tools.asr().transcribe(*decode(master), word_timings=True).words if supports(lang) else None
    return build_captions(timeline, words, lang=lang)


def _labels(ws: Workspace, clip: ClipRow, statement: StatementRow, voice: VoiceRow) -> Any:
    from pipeline.provenance.labels import LABEL_TAG, ClipLabels

    return ClipLabels(clip_id=str(clip.id), statement_id=statement.id, voice_id=voice.id, voice_name=voice.name,
                      organisation=ws.config.organisation, language=statement.language,
                      ai_notice=clip.labels[LABEL_TAG], created_at=clip.created_at.isoformat(),
                      local_notice=clip.labels.get(f"{LABEL_TAG}_{statement.language.split('-')[0].upper()}", ""))
