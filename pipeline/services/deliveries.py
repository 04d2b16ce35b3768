"""Personal copies: every audio or video file that leaves the store names who it was handed to.

A released clip's registered files carry the clip's serial in the payload
mark; they are kept as the release, and never handed out as they are. The
first time someone takes a clip (a portal download, `voxgate pull`,
`voxgate clips export`), a *delivery* is registered for (clip, recipient),
and the clip's premaster is marked with the delivery's serial
(`pipeline.domain.serials`), loudness-limited, checked and exported exactly
as the render did (`services.copies`), with the clip's labels and content
credentials. Videos reuse the clip's picture and take the recipient's sound
(`export.video.replace_audio`). The copies are registered, so the same
recipient gets the same bytes again, and `voxgate verify` reads from a
leaked copy, re-encoded or cut, which clip it is and whom it was given to.

Captions carry no audio, so there is nothing to mark: everyone gets the
clip's own.

Measured on 2 cores: the first download of an 11 s clip, which makes the
copy in all four audio formats and loads the watermark model, 4.8-5.3 s
(scripts/bench_portal.py); later downloads are served from the store. A
video copy of a 66 s clip is a 1.7 s remux, against 11-13 s for the
picture (scripts/bench_video.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from pipeline.domain.serials import delivery_serial
from pipeline.errors import ProvenanceError
from pipeline.provenance.credentials import SIDECAR_SUFFIX
from pipeline.services.copies import check_marks_in, export_signed, mark_serial, payload_mark, read_premaster
from pipeline.services.video import CAPTION_FORMATS, VIDEO_FORMATS, ensure_derived, release_context
from pipeline.store.scratch import job_folder
from pipeline.services.workspace import Workspace
from pipeline.store.models import ClipFileRow, ClipRow, DeliveryFileRow, DeliveryRow

#: One copy is made at a time in a process: concurrent first downloads of the same copy wait for it
#: instead of each making it. Copies already registered are served without taking this lock.
_MAKING: Final = threading.Lock()


@dataclass(frozen=True)
class Copy:
    """A file for one recipient: its digest in the file store, and its sidecar's (Ogg's credentials)."""

    sha256: str
    sidecar_sha256: str | None
    delivery: int | None  # None for captions: the clip's own file, nothing personal in it


def personal_copy(ws: Workspace, clip_id: int, fmt: str, recipient: str, *, now: datetime, tools: Any = None,
                  progress: Callable[[float], None] | None = None) -> Copy:
    """`recipient`'s copy of a released clip in `fmt`, made and registered on first request.

    The caller has checked that the clip may be handed out (released, consent in force), and serves
    a copy made already with `registered_copy`, which takes no lock. `tools` (services.tools.Tools)
    is reused when given, so a server loads its models once.
    """
    if tools is None:
        from pipeline.services.tools import Tools

        tools = Tools()  # loads nothing until a model is needed
    if fmt in CAPTION_FORMATS:
        with _MAKING:
            ensure_derived(ws, clip_id, fmt, tools, now=now, progress=progress)  # returns at once if made
        return Copy(_required(_clip_file(ws, clip_id, fmt), clip_id, fmt), None, None)
    premaster = _premaster(ws, clip_id)  # before anything is registered for a clip that cannot be marked
    delivery = _delivery(ws, clip_id, recipient, now)
    with _MAKING:
        if (found := _registered(ws, delivery, fmt)) is not None:  # made while we waited for the lock
            return found
        if fmt in VIDEO_FORMATS:
            ensure_derived(ws, clip_id, fmt, tools, now=now, progress=progress)  # the clip's picture, made once
            if _registered(ws, delivery, "wav") is None:
                _make_audio(ws, clip_id, premaster, delivery, tools, now)
            _make_video(ws, clip_id, delivery, fmt, tools, now)
        else:
            _make_audio(ws, clip_id, premaster, delivery, tools, now)
    found = _registered(ws, delivery, fmt)
    if found is None:
        raise ProvenanceError(f"The {fmt} copy of clip {clip_id} for {recipient} was not registered; try again.")
    return found


def registered_copy(ws: Workspace, clip_id: int, fmt: str, recipient: str) -> Copy | None:
    """`recipient`'s copy if it was made already (one read, nothing registered): the common case of a download."""
    if fmt in CAPTION_FORMATS:
        digest = _clip_file(ws, clip_id, fmt)
        return None if digest is None else Copy(digest, None, None)
    with ws.sessions() as s:
        delivery = s.scalars(select(DeliveryRow.id).where(DeliveryRow.clip_id == clip_id,
                                                          DeliveryRow.recipient == recipient)).first()
    return None if delivery is None else _registered(ws, delivery, fmt)


def deliveries_of(ws: Workspace, clip_id: int) -> list[DeliveryRow]:
    with ws.sessions() as s:
        return list(s.scalars(select(DeliveryRow).where(DeliveryRow.clip_id == clip_id).order_by(DeliveryRow.id)))


def _delivery(ws: Workspace, clip_id: int, recipient: str, now: datetime) -> int:
    """The id of (clip, recipient)'s delivery, registered on first use."""
    with ws.transaction() as s:
        found = s.scalars(select(DeliveryRow.id).where(DeliveryRow.clip_id == clip_id,
                                                       DeliveryRow.recipient == recipient)).first()
        if found is None:
            row = DeliveryRow(clip_id=clip_id, recipient=recipient, created_at=now)
            s.add(row)
            s.flush()
            ws.record(s, "voxgate.clip.delivery_registered", actor="system", subject=clip_id,
                      data={"delivery": row.id, "recipient": recipient, "serial": delivery_serial(row.id)}, now=now)
            found = row.id
        return found


def _registered(ws: Workspace, delivery: int, fmt: str) -> Copy | None:
    with ws.sessions() as s:
        files = {f.format: f.sha256 for f in s.scalars(select(DeliveryFileRow).where(
            DeliveryFileRow.delivery_id == delivery, DeliveryFileRow.format.in_([fmt, fmt + SIDECAR_SUFFIX])))}
    return Copy(files[fmt], files.get(fmt + SIDECAR_SUFFIX), delivery) if fmt in files else None


def _clip_file(ws: Workspace, clip_id: int, fmt: str) -> str | None:
    with ws.sessions() as s:
        return s.scalars(select(ClipFileRow.sha256).where(ClipFileRow.clip_id == clip_id,
                                                          ClipFileRow.format == fmt)).first()


def _required(digest: str | None, clip_id: int, fmt: str) -> str:
    if digest is None:
        raise ProvenanceError(f"Clip {clip_id} has no {fmt} file; render it again.")
    return digest


def _premaster(ws: Workspace, clip_id: int) -> str:
    with ws.sessions() as s:
        digest = s.get(ClipRow, clip_id).premaster_sha256
    if digest is None:
        raise ProvenanceError(f"Clip {clip_id} was rendered before personal copies existed and has no premaster to "
                              "mark for a recipient; render its statement again to hand it out.")
    return digest


def _make_audio(ws: Workspace, clip_id: int, premaster_sha: str, delivery: int, tools: Any, now: datetime) -> None:
    """Mark the premaster with the delivery's serial and register every audio format of it."""
    context = release_context(ws, clip_id, now)
    serial, presence, mark = delivery_serial(delivery), tools.presence_mark(), payload_mark(ws)
    audio, _ = mark_serial(read_premaster(ws.files.open_checked(premaster_sha)), serial, presence, mark,
                           target_lufs=context.provenance.settings["target_lufs"],
                           true_peak_dbtp=context.provenance.settings["true_peak_dbtp"])
    from pipeline.provenance.credentials import load_identity

    manifest = replace(context.provenance, payload_serial=serial).manifest()
    with job_folder(ws.home, "copy") as tmp:
        files = export_signed(audio, Path(tmp), f"clip-{clip_id}-{delivery}", context.labels, manifest,
                              load_identity(ws.c2pa_dir))
        check_marks_in(files["ogg"], serial, presence, mark, "Ogg Opus copy")
        _register(ws, clip_id, delivery, files, now)


def _make_video(ws: Workspace, clip_id: int, delivery: int, fmt: str, tools: Any, now: datetime) -> None:
    from pipeline.export.video import VIDEO_MIME, replace_audio
    from pipeline.provenance.credentials import embed_credentials, load_identity

    context = release_context(ws, clip_id, now)
    manifest = replace(context.provenance, payload_serial=delivery_serial(delivery)).manifest()
    picture = ws.files.open_checked(_required(_clip_file(ws, clip_id, fmt), clip_id, fmt))
    sound = ws.files.open_checked(_registered(ws, delivery, "wav").sha256)
    identity = load_identity(ws.c2pa_dir)
    with job_folder(ws.home, "copy") as tmp:
        dest = Path(tmp) / f"clip-{clip_id}-{delivery}.mp4"
        replace_audio(picture, sound, dest, shape=fmt, labels=context.labels,
                      seal=lambda path: embed_credentials(path, VIDEO_MIME, manifest, identity))
        check_marks_in(dest, delivery_serial(delivery), tools.presence_mark(), payload_mark(ws),
                       f"{fmt} audio")
        _register(ws, clip_id, delivery, {fmt: dest}, now)


def _register(ws: Workspace, clip_id: int, delivery: int, files: dict[str, Path], now: datetime) -> None:
    digests = {fmt: ws.files.put(path) for fmt, path in files.items()}
    with ws.transaction() as s:
        have = set(s.scalars(select(DeliveryFileRow.format).where(DeliveryFileRow.delivery_id == delivery)))
        made = {fmt: digest for fmt, digest in digests.items() if fmt not in have}
        for fmt, digest in made.items():
            s.add(DeliveryFileRow(delivery_id=delivery, format=fmt, sha256=digest, size=files[fmt].stat().st_size))
        if made:
            ws.record(s, "voxgate.clip.copy_made", actor="system", subject=clip_id,
                      data={"delivery": delivery, "files": made}, now=now)
