"""Released clips for distributors: list them, and hand each person their own copy, audited."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain import ClipState, Role, check_consent
from pipeline.errors import ConsentError, InputError, NotFoundError, StoreError, VoxgateError
from pipeline.provenance.credentials import SIDECAR_SUFFIX
from pipeline.services.statements import get_statement, to_domain
from pipeline.services.gates import released_standing, require_released
from pipeline.services.group_commit import GroupCommit
from pipeline.services.voices import signed_consent
from pipeline.services.video import DERIVED_FORMATS
from pipeline.services.workspace import Workspace
from pipeline.store.files import SHARED_MODE, BlobStore
from pipeline.store.models import ClipFileRow, ClipRow

EXTENSIONS = {"wav": "wav", "mp3": "mp3", "ogg": "ogg", "m4a": "m4a", "mp4-square": "square.mp4",
              "mp4-vertical": "vertical.mp4", "mp4-landscape": "landscape.mp4", "srt": "srt", "vtt": "vtt"}


def list_clips(ws: Workspace, *, include_all: bool = False) -> list[ClipRow]:
    """Released clips (the state column narrows the search; the signed records decide), or every clip."""
    with ws.sessions() as s:
        q = select(ClipRow).order_by(ClipRow.id)
        if include_all:
            return list(s.scalars(q))
        return [c for c in s.scalars(q.where(ClipRow.state == ClipState.RELEASED.value)) if released_standing(s, ws, c)]


def get_clip(ws: Workspace, clip_id: int) -> ClipRow:
    with ws.sessions() as s:
        clip = s.get(ClipRow, clip_id)
        if clip is None:
            raise NotFoundError(f"No clip {clip_id}; list released clips with `voxgate clips list`.")
        return clip


def _released_file(ws: Workspace, s: Session, clip_id: int, fmt: str, now: datetime) -> ClipFileRow:
    """The stored file of a clip that may be distributed now: released and not revoked by the signed records,
    consent still valid."""
    if fmt not in EXTENSIONS:
        raise InputError(f"Unknown format {fmt!r}; choose one of {', '.join(EXTENSIONS)}.")
    clip = s.get(ClipRow, clip_id)
    if clip is None:
        raise NotFoundError(f"No clip {clip_id}; list released clips with `voxgate clips list`.")
    if clip.state == ClipState.REVOKED.value:
        raise ConsentError(f"Clip {clip_id} was revoked with its voice's consent; it must not be distributed.")
    if clip.state != ClipState.RELEASED.value:
        raise InputError(f"Clip {clip_id} is a {clip.state} clip, not released; only released clips can be exported.")
    require_released(s, ws, clip)  # the column is a claim: the signed records decide
    check_consent(signed_consent(s, ws, clip.voice_id), to_domain(get_statement(s, clip.statement_id)), now)
    files = {f.format: f for f in clip.files}
    if fmt not in files:
        raise NotFoundError(f"Clip {clip_id} has no {fmt} file; render it again.")
    return files[fmt]


def _may_hand_over(ws: Workspace, s: Session, clip_id: int, fmt: str, now: datetime) -> None:
    """Refuse what may not leave the store now; videos and captions stand or fall with the clip's master."""
    _released_file(ws, s, clip_id, "wav" if fmt in DERIVED_FORMATS else fmt, now)


def check_hand_over(ws: Workspace, clip_id: int, fmt: str, now: datetime) -> None:
    """Raise unless `clip_id` may be handed out in `fmt` now (released by the signed records, consent in force)."""
    with ws.sessions() as s:
        _may_hand_over(ws, s, clip_id, fmt, now)


@dataclass(frozen=True)
class Handover:
    sha256: str  # the blob in the store, checked just before the hand-over was recorded
    name: str  # what to call it for the recipient
    sidecar_sha256: str | None  # Ogg's content credentials, to travel beside it
    delivery: int | None  # the delivery its payload mark names (None: captions, nothing to mark)
    store: BlobStore = field(repr=False, compare=False)

    @property
    def path(self) -> Path:
        """The file on this machine (from an object store: its verified cached copy)."""
        return self.store.path(self.sha256)

    @property
    def sidecar(self) -> Path | None:
        return self.store.path(self.sidecar_sha256) if self.sidecar_sha256 else None


def _hand_over(ws: Workspace, clip_id: int, fmt: str, action: str, *, recipient: str, now: datetime,
               tools: Any = None, progress: Callable[[float], None] | None = None,
               group: GroupCommit[HandoverEvent] | None = None) -> Handover:
    """Check, make or find `recipient`'s own copy (services.deliveries), verify its bytes, and audit the hand-over.

    Consent and release are checked before a copy is made, and always inside the write transaction
    that records the hand-over, so a revocation meanwhile stops it. With a `group`, the hand-over is
    recorded together with the others that arrive meanwhile (services.group_commit).
    """
    from pipeline.services.deliveries import personal_copy, registered_copy

    copy = registered_copy(ws, clip_id, fmt, recipient)
    if copy is None:
        with ws.sessions() as s:
            _may_hand_over(ws, s, clip_id, fmt, now)  # before anything is made or registered
        copy = personal_copy(ws, clip_id, fmt, recipient, now=now, tools=tools, progress=progress)
    ws.files.check(copy.sha256)  # an object store: its size and checksum, without reading it through here
    if copy.sidecar_sha256:
        ws.files.check(copy.sidecar_sha256)
    event = HandoverEvent(clip_id, fmt, action, recipient, copy.sha256, copy.delivery, now)
    if group is not None:
        group.commit(event)
    elif (error := record_hand_overs(ws, [event])[0]) is not None:
        raise error
    return Handover(copy.sha256, f"voxgate-clip-{clip_id}.{EXTENSIONS[fmt]}", copy.sidecar_sha256, copy.delivery,
                    ws.files)


@dataclass(frozen=True)
class HandoverEvent:
    """One hand-over to record: who gets which copy of which clip."""

    clip_id: int
    fmt: str
    action: str
    recipient: str
    sha256: str
    delivery: int | None
    now: datetime


def record_hand_overs(ws: Workspace, events: list[HandoverEvent]) -> list[VoxgateError | None]:
    """Record `events` in one transaction, each after checking (once per clip and format, at the latest time
    among them) that it may leave the store now; what refused each event, or None where it was recorded."""
    latest = max(e.now for e in events)
    with ws.transaction() as s:
        refusals: dict[tuple[int, str], VoxgateError | None] = {}
        for key in dict.fromkeys((e.clip_id, e.fmt) for e in events):
            try:
                _may_hand_over(ws, s, *key, latest)
                refusals[key] = None
            except VoxgateError as exc:
                refusals[key] = exc
        for e in events:
            if refusals[(e.clip_id, e.fmt)] is None:
                ws.record(s, e.action, actor=e.recipient, subject=e.clip_id,
                          data={"format": e.fmt, "sha256": e.sha256, "delivery": e.delivery}, now=e.now)
    return [refusals[(e.clip_id, e.fmt)] for e in events]


def export_clip(ws: Workspace, clip_id: int, fmt: str, out_dir: Path, *, actor: str | None, now: datetime,
                progress: Callable[[float], None] | None = None) -> Path:
    """Write the actor's own copy of a released clip into `out_dir`, after checking consent still holds.

    Ogg cannot embed content credentials; its sidecar goes beside it as ``<file>.c2pa``.
    """
    if not out_dir.is_dir():
        raise InputError(f"{out_dir} is not a folder; create it first.")
    with ws.sessions() as s:
        who = ws.actor(s, actor, Role.DISTRIBUTOR, Role.REVIEWER)
        _may_hand_over(ws, s, clip_id, fmt, now)
    handover = _hand_over(ws, clip_id, fmt, "voxgate.clip.exported", recipient=who.name, now=now, progress=progress)
    dest = out_dir / handover.name
    try:
        if handover.sidecar_sha256 is not None:  # first, so the file never appears without its credentials
            ws.files.export(handover.sidecar_sha256, dest.with_name(dest.name + SIDECAR_SUFFIX), mode=SHARED_MODE)
        ws.files.export(handover.sha256, dest, mode=SHARED_MODE)
    except OSError as exc:
        raise StoreError(f"Could not write {dest}: {exc.strerror}; check the folder's permissions.") from exc
    return dest


def open_download(ws: Workspace, clip_id: int, fmt: str, *, actor: str, now: datetime, tools: Any = None,
                  group: GroupCommit[HandoverEvent] | None = None) -> Handover:
    """The distributor's own verified copy for a portal download, audited with their name (in `group`'s
    next commit when one is given)."""
    return _hand_over(ws, clip_id, fmt, "voxgate.clip.downloaded", recipient=actor, now=now, tools=tools,
                      group=group)
