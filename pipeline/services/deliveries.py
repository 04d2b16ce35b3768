"""Personal copies: every audio or video file that leaves the store names who it was handed to.

A released clip's registered files carry the clip's serial in the payload
mark; they are kept as the release, and never handed out as they are. At
release, each active distributor's copies in the formats most taken are
queued (`services.copy_jobs`) and made by a worker before anyone asks; for
anyone else, and any other format, the first time they take the clip (a
portal download, `voxgate pull`, `voxgate clips export`). Either way a
*delivery* is registered for (clip, recipient), and the clip's premaster is marked with the delivery's serial
(`pipeline.domain.serials`), loudness-limited, checked and exported exactly
as the render did (`services.copies`), with the clip's labels and content
credentials. Videos reuse the clip's picture and take the recipient's sound
(`export.video.replace_audio`). The copies are registered, so the same
recipient gets the same bytes again, and `voxgate verify` reads from a
leaked copy, re-encoded or cut, which clip it is and whom it was given to.

Captions carry no audio, so there is nothing to mark: everyone gets the
clip's own.

One copy decodes the premaster once, marks it once, and encodes all its
formats (and videos' sound) at once, one thread each; scripts/bench_copies.py
measures it per format. A video copy is a remux of the clip's picture (made
once per clip) with the recipient's sound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from pipeline.domain.serials import delivery_serial
from pipeline.errors import ProvenanceError
from pipeline.provenance.credentials import SIDECAR_SUFFIX
from pipeline.services.copies import (
    AUDIO_FORMATS,
    check_marks_in,
    export_signed,
    mark_serial,
    payload_mark,
    read_premaster,
    write_premaster,
)
from pipeline.services.video import (
    CAPTION_FORMATS,
    VIDEO_FORMATS,
    ensure_derived,
    release_context,
)
from pipeline.services.workspace import Workspace
from pipeline.store.models import ClipFileRow, ClipRow, DeliveryFileRow, DeliveryRow
from pipeline.store.scratch import job_folder

#: A copy's presence mark is read from this many seconds in the middle of its Ogg Opus: its render read the
#: premaster's from a whole Ogg made the same way, and one Perth detection of a whole minute cost a copy more
#: than its Opus encode. Each copy's own mark, the payload with its serial, is read from the whole file.
COPY_PRESENCE_EXCERPT_S: Final = 10.0


class KeyedLocks:
    """One lock per key, made on first use: requests for the same thing wait, for different things not."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, threading.Lock] = {}

    @contextmanager
    def held(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield


#: One (recipient, clip) copy is made at a time in a process: concurrent requests for the same copy wait
#: for it instead of each making it; other people's copies go on beside it. Copies already registered
#: are served without taking any lock.
_MAKING: Final = KeyedLocks()


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
        return Copy(make_derived(ws, clip_id, fmt, tools, now=now, progress=progress), None, None)
    premaster, strength = _premaster(ws, clip_id)  # before anything is registered for a clip that cannot be marked
    delivery = _delivery(ws, clip_id, recipient, now)
    with _MAKING.held(("delivery", delivery)):
        if (found := _registered(ws, delivery, fmt)) is not None:  # made while we waited for the lock
            return found
        # One mark makes every audio format the recipient lacks at once (encoded in parallel).
        missing = tuple(f for f in AUDIO_FORMATS if f not in _registered_formats(ws, delivery))
        _make(ws, clip_id, premaster, strength, delivery, tuple(dict.fromkeys((*missing, fmt))), tools, now, progress)
    found = _registered(ws, delivery, fmt)
    if found is None:
        raise ProvenanceError(f"The {fmt} copy of clip {clip_id} for {recipient} was not registered; try again.")
    return found


def prepare_copies(ws: Workspace, clip_id: int, recipient: str, formats: tuple[str, ...], *, now: datetime,
                   tools: Any) -> dict[str, str]:
    """Make and register `recipient`'s copies of a released clip in those of `formats` not made yet.

    The queue's step (services.copy_jobs): idempotent, so a repeated step (a worker killed and
    restarted) makes only what is missing and registers nothing twice. Returns {format: sha256} of
    every requested format as registered. The caller has checked that the clip may be handed out.
    """
    unknown = [f for f in formats if f not in (*AUDIO_FORMATS, *VIDEO_FORMATS)]
    if unknown:
        raise ProvenanceError(f"No personal copy is made in {', '.join(unknown)}; "
                              f"choose from {', '.join((*AUDIO_FORMATS, *VIDEO_FORMATS))}.")
    premaster, strength = _premaster(ws, clip_id)
    delivery = _delivery(ws, clip_id, recipient, now)
    with _MAKING.held(("delivery", delivery)):
        missing = tuple(f for f in formats if f not in _registered_formats(ws, delivery))
        if missing:
            _make(ws, clip_id, premaster, strength, delivery, missing, tools, now, None)
    have = _registered_formats(ws, delivery)
    return {f: have[f] for f in formats if f in have}


def make_derived(ws: Workspace, clip_id: int, fmt: str, tools: Any, *, now: datetime,
                 progress: Callable[[float], None] | None = None) -> str:
    """The clip's own `fmt` (a video's picture, or captions), made once for everyone: its digest.

    Made and registered if missing (`video.ensure_derived`), one at a time in a process: a request
    and a job that need the same picture wait for one another instead of each making it.
    """
    with _MAKING.held(("derived", clip_id, fmt)):
        ensure_derived(ws, clip_id, fmt, tools, now=now, progress=progress)  # returns at once if made
    return _required(_clip_file(ws, clip_id, fmt), clip_id, fmt)


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


def _registered_formats(ws: Workspace, delivery: int) -> dict[str, str]:
    with ws.sessions() as s:
        return {f.format: f.sha256 for f in s.scalars(select(DeliveryFileRow).where(
            DeliveryFileRow.delivery_id == delivery))}


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


def _premaster(ws: Workspace, clip_id: int) -> tuple[str, float | None]:
    """The clip's premaster, and the payload-mark strength its render took on it (None for an older render)."""
    with ws.sessions() as s:
        clip = s.get(ClipRow, clip_id)
        digest, strength = clip.premaster_sha256, clip.figures.get("payload_strength")
    if digest is None:
        raise ProvenanceError(f"Clip {clip_id} was rendered before personal copies existed and has no premaster to "
                              "mark for a recipient; render its statement again to hand it out.")
    return digest, strength


def _make(ws: Workspace, clip_id: int, premaster_sha: str, strength: float | None, delivery: int,
          formats: tuple[str, ...], tools: Any, now: datetime, progress: Callable[[float], None] | None) -> None:
    """Mark the premaster once with the delivery's serial; encode every one of `formats` from it in parallel.

    Audio formats are exported and signed as the render's are; a video takes the clip's picture
    (made once per clip) and this sound. The Ogg (or, without one, the first lossy file) is read back
    for both marks, each video for the serial; then every file is registered in one transaction, so
    a copy is either wholly registered or not at all.
    """
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.provenance.credentials import load_identity

    audio_formats = tuple(f for f in formats if f in AUDIO_FORMATS)
    videos = tuple(f for f in formats if f in VIDEO_FORMATS)
    for fmt in videos:  # the clip's picture, made once for everyone
        make_derived(ws, clip_id, fmt, tools, now=now, progress=progress)
    context = release_context(ws, clip_id, now)
    serial, presence, mark = delivery_serial(delivery), tools.presence_mark(), payload_mark(ws)
    lossy = next((f for f in ("ogg", "m4a", "mp3") if f in audio_formats), None)
    encoded_read = lossy is not None or bool(videos)  # the marks are read from the encoded files below
    audio, _ = mark_serial(read_premaster(ws.files.open_checked(premaster_sha)), serial, presence, mark,
                           target_lufs=context.provenance.settings["target_lufs"],
                           true_peak_dbtp=context.provenance.settings["true_peak_dbtp"],
                           read_back=not encoded_read, strength=strength if encoded_read else None)
    manifest = replace(context.provenance, payload_serial=serial).manifest()
    identity = load_identity(ws.c2pa_dir)
    stem = f"clip-{clip_id}-{delivery}"
    with job_folder(ws.home, "copy") as tmp, ThreadPoolExecutor(max(1, len(videos)) + 1,
                                                                thread_name_prefix="copy") as pool:
        folder = Path(tmp)
        sound = write_premaster(audio, folder / f"{stem}.sound.wav") if videos else None
        jobs = {fmt: pool.submit(_video_copy, ws, clip_id, fmt, sound, folder / f"{stem}.{fmt}.mp4", context,
                                 manifest, identity) for fmt in videos}
        files = export_signed(audio, folder, stem, context.labels, manifest, identity, audio_formats)
        files.update({fmt: job.result() for fmt, job in jobs.items()})  # re-raises a failed video
        # Both marks from the lossy audio (Ogg Opus first: the harder codec); a video made beside it
        # from the same samples is read for the recipient's serial, or for both marks if it stands alone.
        checks = [(files[lossy], presence, f"{lossy} copy")] if lossy else []
        checks += [(files[f], None if lossy else presence, f"{f} audio") for f in videos]
        for done in [pool.submit(check_marks_in, path, serial, reader, mark, what, COPY_PRESENCE_EXCERPT_S)
                     for path, reader, what in checks]:
            done.result()  # fail closed: nothing is registered unless every check passed
        _register(ws, clip_id, delivery, files, now)


def _video_copy(ws: Workspace, clip_id: int, fmt: str, sound: Path, dest: Path, context: Any, manifest: Any,
                identity: Any) -> Path:
    """The clip's picture with the recipient's marked sound, labelled and sealed."""
    from pipeline.export.video import VIDEO_MIME, replace_audio
    from pipeline.provenance.credentials import embed_credentials

    picture = ws.files.open_checked(_required(_clip_file(ws, clip_id, fmt), clip_id, fmt))
    return replace_audio(picture, sound, dest, shape=fmt, labels=context.labels,
                         seal=lambda path: embed_credentials(path, VIDEO_MIME, manifest, identity))


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
