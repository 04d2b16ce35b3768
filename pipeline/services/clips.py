"""Released clips for distributors: list and export, with every export audited."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from pipeline.domain import Role, check_consent
from pipeline.errors import ConsentError, InputError, NotFoundError, StoreError
from pipeline.provenance.credentials import SIDECAR_SUFFIX
from pipeline.services.statements import get_statement, to_domain
from pipeline.services.voices import consent_of, current_consent
from pipeline.services.workspace import Workspace
from pipeline.store.files import atomic_copy
from pipeline.store.models import ClipRow

EXTENSIONS = {"wav": "wav", "mp3": "mp3", "ogg": "ogg", "m4a": "m4a"}


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


def export_clip(ws: Workspace, clip_id: int, fmt: str, out_dir: Path, *, actor: str | None, now: datetime) -> Path:
    """Copy a released clip's file to `out_dir`, after checking consent still holds and the bytes are intact.

    A format whose content credentials live in a sidecar (Ogg) gets it copied too, as ``<file>.c2pa``.
    """
    if fmt not in EXTENSIONS:
        raise InputError(f"Unknown format {fmt!r}; choose one of {', '.join(EXTENSIONS)}.")
    if not out_dir.is_dir():
        raise InputError(f"{out_dir} is not a folder; create it first.")
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.DISTRIBUTOR, Role.REVIEWER)
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
            raise StoreError(f"Clip {clip_id} has no {fmt} file; render it again.")
        dest = out_dir / f"voxgate-clip-{clip_id}.{EXTENSIONS[fmt]}"
        sidecar = files.get(fmt + SIDECAR_SUFFIX)  # stored as format "ogg.c2pa" by the render
        try:
            if sidecar is not None:
                atomic_copy(ws.files.open_checked(sidecar.sha256), dest.with_name(dest.name + SIDECAR_SUFFIX))
            atomic_copy(ws.files.open_checked(files[fmt].sha256), dest)
        except OSError as exc:
            raise StoreError(f"Could not write {dest}: {exc.strerror}; check the folder's permissions.") from exc
        data = {"format": fmt, "sha256": files[fmt].sha256}
        if sidecar is not None:
            data["sidecar_sha256"] = sidecar.sha256
        ws.record(s, "voxgate.clip.exported", actor=who.name, subject=clip_id, data=data, now=now)
    return dest


def open_download(ws: Workspace, clip_id: int, fmt: str, *, actor: str, now: datetime) -> tuple[Path, str]:
    """The verified file of a released clip for a download, audited with the distributor's name.

    Returns (path in the file store, download file name). Raises `ConsentError` for a revoked clip.
    """
    if fmt not in EXTENSIONS:
        raise InputError(f"Unknown format {fmt!r}; choose one of {', '.join(EXTENSIONS)}.")
    with ws.transaction() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is None or clip.state not in ("released", "revoked"):
            raise NotFoundError(f"No released clip {clip_id}.")
        if clip.state == "revoked":
            raise ConsentError(f"Clip {clip_id} was revoked with its voice's consent and may no longer be distributed.")
        check_consent(consent_of(current_consent(s, clip.voice_id)), to_domain(get_statement(s, clip.statement_id)), now)
        files = {f.format: f for f in clip.files}
        if fmt not in files:
            raise NotFoundError(f"Clip {clip_id} has no {fmt} file.")
        path = ws.files.open_checked(files[fmt].sha256)
        ws.record(s, "voxgate.clip.downloaded", actor=actor, subject=clip_id,
                  data={"format": fmt, "sha256": files[fmt].sha256}, now=now)
    return path, f"voxgate-clip-{clip_id}.{EXTENSIONS[fmt]}"
