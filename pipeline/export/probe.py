"""Read back what an audio file really holds, through ffprobe and ffmpeg.

Exports are checked by reading them, not by trusting the encoder's exit code:
the exporter refuses a file whose AI label did not survive, and `verify`
decodes circulating clips with the same `decode()`.

One gap is filled by hand: when a WAV has both an INFO list and an ``id3 ``
chunk, ffmpeg keeps INFO and discards the ID3 tags ("Discarding ID3 tags
because more suitable tags were found"), and only ID3 holds our machine-readable
keys. `probe()` therefore also reads the WAV ``id3 `` chunk itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipeline.errors import AudioError

log = logging.getLogger(__name__)

FFMPEG_MISSING: Final = "{tool} is not installed; run `make setup`"

#: ID3 text frames and the tag names ffmpeg gives them (the writer uses the same table).
ID3_TEXT_FRAMES: Final = {"title": "TIT2", "artist": "TPE1", "copyright": "TCOP", "publisher": "TPUB", "date": "TDRC"}
_ID3_FRAME_NAMES: Final = {frame: name for name, frame in ID3_TEXT_FRAMES.items()}
_ID3_ENCODINGS: Final = ("latin-1", "utf-16", "utf-16-be", "utf-8")


@dataclass(frozen=True)
class ProbeInfo:
    """The first audio stream of a file, as ffprobe sees it."""

    format_name: str
    codec: str
    sample_rate: int
    channels: int
    duration: float  # seconds
    bit_rate: int | None  # container bit rate, bits per second; None when ffprobe cannot tell
    tags: dict[str, str] = field(default_factory=dict)  # lower-cased keys; stream tags override format tags


def require_tool(name: str) -> str:
    """Absolute path of ffmpeg or ffprobe, or AudioError with the fix."""
    path = shutil.which(name)
    if path is None:
        raise AudioError(FFMPEG_MISSING.format(tool=name))
    return path


def probe(path: Path) -> ProbeInfo:
    """Describe the audio in `path`; AudioError if it is unreadable or has no audio stream."""
    result = _run(
        [require_tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        what=f"ffprobe could not read {path}",
    )
    try:
        info: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise AudioError(f"ffprobe gave unreadable output for {path}: {exc}") from exc
    stream = next((s for s in info.get("streams", []) if s.get("codec_type") == "audio"), None)
    if stream is None:
        raise AudioError(f"{path} has no audio stream.")
    fmt = info.get("format", {})
    tags = {k.lower(): v for k, v in fmt.get("tags", {}).items()}
    tags.update({k.lower(): v for k, v in stream.get("tags", {}).items()})
    if fmt.get("format_name") == "wav":
        tags.update(_wav_id3_tags(path))
    bit_rate = fmt.get("bit_rate") or stream.get("bit_rate")
    return ProbeInfo(
        format_name=fmt.get("format_name", ""),
        codec=stream.get("codec_name", ""),
        sample_rate=int(stream.get("sample_rate", 0)),
        channels=int(stream.get("channels", 0)),
        duration=float(stream.get("duration") or fmt.get("duration") or 0.0),
        bit_rate=int(bit_rate) if bit_rate else None,
        tags=tags,
    )


def decode(path: Path, sr: int | None = None, *, limit_s: float | None = None) -> tuple[np.ndarray, int]:
    """Decode to float32 mono at `sr` (default: the file's own rate); channels are averaged.

    ffmpeg reads the file as a stream; `limit_s` stops it after that many seconds of audio, so the
    decoded samples (not the file) bound the memory a check needs.
    """
    rate = sr if sr is not None else probe(path).sample_rate
    if rate <= 0:
        raise AudioError(f"Cannot decode {path} at sample rate {rate}.")
    result = _run(
        [require_tool("ffmpeg"), "-v", "error", "-nostdin", "-i", str(path),
         "-map", "0:a:0", "-ac", "1", "-ar", str(rate), *(("-t", f"{limit_s:g}") if limit_s else ()),
         "-f", "f32le", "pipe:1"],
        what=f"ffmpeg could not decode {path}",
        text=False,
    )
    samples = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)
    if samples.size == 0:
        raise AudioError(f"{path} decoded to no audio.")
    return samples, rate


def _run(args: list[str], *, what: str, text: bool = True) -> subprocess.CompletedProcess[Any]:
    log.debug("running %s", args)
    result = subprocess.run(args, capture_output=True, text=text, check=False)
    if result.returncode != 0:
        stderr = result.stderr if text else result.stderr.decode(errors="replace")
        raise AudioError(f"{what}: {stderr.strip() or f'exit status {result.returncode}'}")
    return result


def _wav_id3_tags(path: Path) -> dict[str, str]:
    """Tags of the first ``id3 `` chunk of a RIFF/WAVE file (empty if it has none)."""
    try:
        with path.open("rb") as handle:
            riff, _size, wave = struct.unpack("<4sI4s", handle.read(12))
            if riff != b"RIFF" or wave != b"WAVE":
                return {}
            while len(header := handle.read(8)) == 8:
                chunk_id, size = struct.unpack("<4sI", header)
                if chunk_id in (b"id3 ", b"ID3 "):
                    return _id3_text_tags(handle.read(size))
                handle.seek(size + (size & 1), os.SEEK_CUR)
    except (OSError, struct.error) as exc:
        raise AudioError(f"Could not read the tags of {path}: {exc}") from exc
    return {}


def _id3_text_tags(tag: bytes) -> dict[str, str]:
    """Text frames of an ID3v2.3/2.4 tag, named as ffmpeg names them (TXXX by description).

    Tags with unsynchronisation or an extended header are not written by any
    encoder we use and are skipped whole rather than misread.
    """
    if len(tag) < 10 or tag[:3] != b"ID3" or tag[3] not in (3, 4) or tag[5] & 0xC0:
        return {}
    version, end, pos = tag[3], 10 + _unsyncsafe(tag[6:10]), 10
    tags: dict[str, str] = {}
    while pos + 10 <= min(end, len(tag)) and tag[pos] != 0:
        frame_id = tag[pos : pos + 4].decode("latin-1")
        raw_size = tag[pos + 4 : pos + 8]
        size = _unsyncsafe(raw_size) if version == 4 else int.from_bytes(raw_size, "big")
        body, pos = tag[pos + 10 : pos + 10 + size], pos + 10 + size
        if not body or body[0] >= len(_ID3_ENCODINGS) or not (frame_id[0] == "T" or frame_id == "COMM"):
            continue
        encoding = _ID3_ENCODINGS[body[0]]
        if frame_id == "COMM":  # 3-byte language, then description NUL text
            key, value = "comment", body[4:].decode(encoding, errors="replace").partition("\0")[2]
        elif frame_id == "TXXX":  # description NUL value
            key, _, value = body[1:].decode(encoding, errors="replace").partition("\0")
        else:
            key, value = _ID3_FRAME_NAMES.get(frame_id, frame_id), body[1:].decode(encoding, errors="replace")
        tags[key.lower().lstrip("\ufeff")] = value.lstrip("\ufeff").rstrip("\0")
    return tags


def _unsyncsafe(raw: bytes) -> int:
    return (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]
