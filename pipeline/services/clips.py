"""Released clips for distributors: list and export, with every export audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain import Role, check_consent
from pipeline.errors import ConsentError, InputError, NotFoundError, StoreError
from pipeline.provenance.credentials import SIDECAR_SUFFIX
from pipeline.services.statements import get_statement, to_domain
from pipeline.services.voices import consent_of, current_consent
from pipeline.services.video import DERIVED_FORMATS, ensure_derived
from pipeline.services.workspace import Workspace
from pipeline.store.files import atomic_copy
from pipeline.store.models import ClipFileRow, ClipRow

EXTENSIONS = {"wav": "wav", "mp3": "mp3", "ogg": "ogg", "m4a": "m4a", "mp4-square": "square.mp4",
              "mp4-vertical": "vertical.mp4", "mp4-landscape": "landscape.mp4", "srt": "srt", "vtt": "vtt"}


def list_clips(ws: Workspace, *, include_all: bool = False) -> list[ClipRow]:
    with ws.sessions() as s:
        q = select(ClipRow).order_by(ClipRow.id)
        if not include_all:
            q = q.where(ClipRow.state == "released")
        return list(s.scalars(q))


def get_clip(ws: Workspace, clip_id: int) -> ClipRow:
    with ws.sessions() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is None:
            raise NotFoundError(f"No clip {clip_id}; list released clips with `voxgate clips list`.")
        return clip


def _released_file(s: Session, clip_id: int, fmt: str, now: datetime) -> ClipFileRow:
    """The stored file of a clip that may be distributed now: released, not revoked, consent still valid."""
    if fmt not in EXTENSIONS:
        raise InputError(f"Unknown format {fmt!r}; choose one of {', '.join(EXTENSIONS)}.")
    clip = s.get(ClipRow, clip_id)
    if clip is None:
        raise NotFoundError(f"No clip {clip_id}; list released clips with `voxgate clips list`.")
    if clip.state == "revoked":
        raise ConsentError(f"Clip {clip_id} was revoked with its voice's consent; it must not be distributed.")
    if clip.state != "released":
        raise InputError(f"Clip {clip_id} is a {clip.state} clip, not released; only released clips can be exported.")
    check_consent(consent_of(current_consent(s, clip.voice_id)), to_domain(get_statement(s, clip.statement_id)), now)
    files = {f.format: f for f in clip.files}
    if fmt not in files:
        raise NotFoundError(f"Clip {clip_id} has no {fmt} file; render it again.")
    return files[fmt]


def _released_file_or_derivable(s: Session, clip_id: int, fmt: str, now: datetime) -> None:
    """Refuse early (before minutes of video encoding) what `_released_file` would refuse."""
    _released_file(s, clip_id, "wav" if fmt in DERIVED_FORMATS else fmt, now)


def _distribute(ws: Workspace, clip_id: int, fmt: str, action: str, *, actor: str, now: datetime) -> tuple[Path, str]:
    """Check, verify the bytes, and audit one hand-over of a clip file; returns (blob path, file name).

    The checksum is read outside the write transaction so concurrent downloads hold the lock only
    for the audit event; the clip's state and consent are checked again inside it.
    """
    with ws.sessions() as s:
        digest = _released_file(s, clip_id, fmt, now).sha256
    path = ws.files.open_checked(digest)
    with ws.transaction() as s:
        _released_file(s, clip_id, fmt, now)
        ws.record(s, action, actor=actor, subject=clip_id, data={"format": fmt, "sha256": digest}, now=now)
    return path, f"voxgate-clip-{clip_id}.{EXTENSIONS[fmt]}"


def export_clip(ws: Workspace, clip_id: int, fmt: str, out_dir: Path, *, actor: str | None, now: datetime,
                progress: Callable[[float], None] | None = None) -> Path:
    """Copy a released clip's file to `out_dir`, after checking consent still holds and the bytes are intact.

    Videos and captions are made on first request (see services.video). Ogg cannot embed content
    credentials; its sidecar goes beside it as ``<file>.c2pa``.
    """
    if not out_dir.is_dir():
        raise InputError(f"{out_dir} is not a folder; create it first.")
    with ws.sessions() as s:
        who = ws.actor(s, actor, Role.DISTRIBUTOR, Role.REVIEWER)
        _released_file_or_derivable(s, clip_id, fmt, now)
    if fmt in DERIVED_FORMATS:
        ensure_derived(ws, clip_id, fmt, now=now, progress=progress)
    path, name = _distribute(ws, clip_id, fmt, "voxgate.clip.exported", actor=who.name, now=now)
    dest = out_dir / name
    with ws.sessions() as s:  # the render stores it as format "ogg.c2pa"
        sidecar = s.scalars(select(ClipFileRow.sha256).where(ClipFileRow.clip_id == clip_id,
                                                             ClipFileRow.format == fmt + SIDECAR_SUFFIX)).first()
    try:
        if sidecar is not None:  # first, so the file never appears without its credentials
            atomic_copy(ws.files.open_checked(sidecar), dest.with_name(dest.name + SIDECAR_SUFFIX))
        atomic_copy(path, dest)
    except OSError as exc:
        raise StoreError(f"Could not write {dest}: {exc.strerror}; check the folder's permissions.") from exc
    return dest


def open_download(ws: Workspace, clip_id: int, fmt: str, *, actor: str, now: datetime) -> tuple[Path, str]:
    """The verified file of a released clip for a portal download, audited with the distributor's name."""
    return _distribute(ws, clip_id, fmt, "voxgate.clip.downloaded", actor=actor, now=now)
