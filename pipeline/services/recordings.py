"""The training recordings: read from a folder with their transcripts, and handed to training only under consent.

An enrollment copies them into `<home>/voices/<id>/enrollments/<script id>/wavs/`
and records the sha256 of each; `enrolled_recordings` is the only way training
gets at them.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain import check_consent_in_force
from pipeline.errors import AudioError, InputError
from pipeline.services.voices import current_consent, get_voice, signed_consent
from pipeline.services.workspace import Workspace, utcnow
from pipeline.store.models import EnrollmentRow, RecordingRow

FILE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
MAX_EARLIER_RECORDINGS: Final = 20
"""How many of an earlier enrollment's recordings a re-enrollment is compared with (evenly spread)."""


@dataclass(frozen=True)
class Recording:
    """A training recording covered by the voice's current enrollment (the API training codes against)."""

    path: Path
    sha256: str
    transcript: str



@dataclass(frozen=True)
class RecordingSource:
    name: str  # file name as it will be kept: <id>.wav
    path: Path
    transcript: str


def read_recordings(folder: Path) -> list[RecordingSource]:
    """The training recordings in `folder`: LJSpeech `metadata.csv` (id|text|normalised text, wavs in wavs/ or
    beside it) or one `.txt` transcript beside each `.wav`."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; --recordings takes a folder of .wav files with transcripts.")
    meta = folder / "metadata.csv"
    sources: list[RecordingSource] = []
    if meta.is_file():
        try:
            lines = meta.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise InputError(f"{meta} is not UTF-8 text; save it as UTF-8.") from None
        for number, row in enumerate(csv.reader(lines, delimiter="|", quoting=csv.QUOTE_NONE), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2 or not FILE_NAME.match(row[0].strip()):
                raise InputError(f"{meta} line {number}: expected `id|transcript[|normalised transcript]` with a "
                                 f"plain file id, got {'|'.join(row)[:80]!r}.")
            rid = row[0].strip()
            text = (row[2] if len(row) > 2 and row[2].strip() else row[1]).strip()
            wav = next((p for p in (folder / "wavs" / f"{rid}.wav", folder / f"{rid}.wav") if p.is_file()), None)
            if wav is None:
                raise InputError(f"{meta} line {number} names {rid!r}, but neither wavs/{rid}.wav nor {rid}.wav exists.")
            sources.append(RecordingSource(f"{rid}.wav", wav, text))
        listed = {src.path.resolve() for src in sources}
        unlisted = sorted(p.name for d in (folder, folder / "wavs") if d.is_dir() for p in d.glob("*.wav")
                          if p.resolve() not in listed)
        if unlisted:
            raise InputError(f"{len(unlisted)} .wav file(s) are not in metadata.csv ({', '.join(unlisted[:3])}); "
                             "add their transcripts or move them out of the folder.")
    else:
        for wav in sorted(folder.glob("*.wav")):
            txt = wav.with_suffix(".txt")
            if not txt.is_file():
                raise InputError(f"{wav.name} has no transcript: put the words it says in {txt.name} beside it, "
                                 "or give a metadata.csv.")
            if not FILE_NAME.match(wav.name):
                raise InputError(f"{wav.name}: recording names may hold letters, digits, '.', '_' and '-' only.")
            try:
                sources.append(RecordingSource(wav.name, wav, " ".join(txt.read_text(encoding="utf-8-sig").split())))
            except UnicodeDecodeError:
                raise InputError(f"{txt} is not UTF-8 text; save it as UTF-8.") from None
    if not sources:
        raise InputError(f"{folder} holds no recordings: give .wav files with a .txt beside each, or a metadata.csv.")
    if empty := [src.name for src in sources if not src.transcript]:
        raise InputError(f"{empty[0]} has an empty transcript; write the words it says.")
    names = [src.name for src in sources]
    if len(set(names)) != len(names):
        raise InputError(f"{folder} names a recording twice; every id must be unique.")
    return sources


def load_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise InputError(f"{path.name} could not be read as a WAV file ({exc}).") from None
    return data.mean(axis=1), int(sr)


def load_any(path: Path) -> tuple[np.ndarray, int]:
    """Consent audio in any format ffmpeg reads (a phone's m4a, an mp3, a WAV), at its own rate."""
    from pipeline.export.probe import decode

    if path.suffix.lower() == ".wav":
        return load_wav(path)
    try:
        return decode(path)
    except AudioError as exc:
        raise InputError(f"The consent audio {path.name} could not be decoded: {exc}") from None



def earlier_recordings(ws: Workspace, s: Session, voice_id: str) -> list[Path]:
    """Recordings of the voice's latest earlier enrollment, if any: a re-enrollment must be the same voice."""
    earlier = s.scalars(select(EnrollmentRow).where(EnrollmentRow.voice_id == voice_id)
                        .order_by(EnrollmentRow.id.desc()).limit(1)).first()
    if earlier is None:
        return []
    rows = list(s.scalars(select(RecordingRow).where(RecordingRow.enrollment_id == earlier.id).order_by(RecordingRow.id)))
    step = max(1, len(rows) // MAX_EARLIER_RECORDINGS)
    return [ws.home / earlier.folder / "wavs" / r.name for r in rows[::step][:MAX_EARLIER_RECORDINGS]]



def enrolled_recordings(ws: Workspace, voice_id: str) -> list[Recording]:
    """The recordings the voice's current consent rests on: the only ones training may use.

    Refused when the consent is missing, revoked or expired. A voice whose
    consent came from a profile (`voice add`) has no enrolled recordings.
    Each `Recording.sha256` is what was enrolled: check it on the bytes you read.
    """
    now = utcnow()
    with ws.sessions() as s:
        get_voice(s, voice_id)
        check_consent_in_force(signed_consent(s, ws, voice_id), voice_id, now)  # no recording may be used without it
        row = current_consent(s, voice_id)
        if row.enrollment_id is None:
            return []
        enrollment = s.get(EnrollmentRow, row.enrollment_id)
        folder = ws.home / enrollment.folder / "wavs"
        rows = s.scalars(select(RecordingRow).where(RecordingRow.enrollment_id == enrollment.id)
                         .order_by(RecordingRow.id))
        return [Recording(folder / r.name, r.sha256, r.transcript) for r in rows]



__all__ = ["Recording", "RecordingSource", "earlier_recordings", "enrolled_recordings", "load_any", "load_wav",
           "read_recordings"]
