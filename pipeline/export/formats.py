"""Write a finished clip as WAV master, MP3, Ogg Opus or Opus in MP4 (M4A), labelled, atomically.

One ffmpeg process per export reads float32 samples on stdin, so nothing is
quantised before the encoder and no intermediate WAV is written. We call ffmpeg
directly rather than through pydub: pydub's WAV export bypasses ffmpeg (and so
drops tags), and its other exports round-trip through two temporary files in
the system temp dir.

ffmpeg 5.1 writes no ID3 chunk into WAV and writes an MP3 comment as
``TXXX:comment`` instead of ``COMM``, so ID3v2.4 tags for both are built here
(`_id3v24_tag`); Ogg Opus gets Vorbis comments from ffmpeg, and M4A gets MP4
metadata items (``use_metadata_tags`` keeps our own keys, which the MP4 muxer
drops otherwise).

M4A exists for content credentials: c2pa cannot embed a manifest into Ogg,
but it can into MP4, and Opus in MP4 (measured: ffmpeg 5.1, c2pa 0.38) keeps
the Ogg export's codec and bit rate, so the presence mark survives it the same way.

A `seal` (content credentials) runs on the finished temporary file, before
the check and the rename: the label check then reads the signed bytes, and a
file that fails to sign never takes the final name.

Every export is read back with ffprobe before it takes its final name: if any
label tag is missing or altered the file is deleted and ProvenanceError is
raised. A crash at any point leaves at most a hidden ``.<name>.*.part`` file,
never a half-written file under the final name.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Final

import numpy as np

from pipeline.audio.mix import checked_mono
from pipeline.errors import AudioError, InputError, ProvenanceError, map_exceptions
from pipeline.export.probe import ID3_TEXT_FRAMES, probe, require_tool
from pipeline.provenance.labels import ClipLabels
from pipeline.store.files import atomic_output

log = logging.getLogger(__name__)

MP3_BITRATE: Final = "128k"
#: Messaging apps send voice notes as mono Ogg Opus; 32 kbit/s "voip" is
#: transparent for speech and the presence mark survives it (score 1.000).
OPUS_BITRATE: Final = "32k"
OPUS_APPLICATION: Final = "voip"
OPUS_SAMPLE_RATE: Final = 48_000  # Opus runs at 48 kHz inside; resample once, before the encoder.

_ID3_UTF8: Final = b"\x03"
_ID3_MAX_SIZE: Final = 1 << 28  # sizes are four 7-bit "syncsafe" bytes


class ExportFormat(str, Enum):
    """Formats a clip is released in, with what ffprobe must find inside."""

    WAV = "wav"
    MP3 = "mp3"
    OGG = "ogg"
    M4A = "m4a"

    @property
    def extension(self) -> str:
        return f".{self.value}"

    @property
    def mime(self) -> str:
        return _MIME[self]

    @property
    def codec(self) -> str:
        """Codec name as ffprobe reports it."""
        return _CODEC[self]


_MIME: Final = {ExportFormat.WAV: "audio/wav", ExportFormat.MP3: "audio/mpeg", ExportFormat.OGG: "audio/ogg",
                 ExportFormat.M4A: "audio/mp4"}
_CODEC: Final = {ExportFormat.WAV: "pcm_s16le", ExportFormat.MP3: "mp3", ExportFormat.OGG: "opus",
                 ExportFormat.M4A: "opus"}

Seal = Callable[[Path, ExportFormat], None]
"""Signs the encoded file in place (content credentials); raises to stop the export."""


def export_clip(
    samples: np.ndarray, sample_rate: int, fmt: ExportFormat | str, dest: Path, labels: ClipLabels,
    *, seal: Seal | None = None,
) -> Path:
    """Encode `samples` (float32 mono) into `dest`, tagged with `labels` and sealed by `seal`; return `dest`.

    Replaces an existing `dest` atomically. Raises InputError for bad samples
    or a mismatched suffix, AudioError when encoding or writing fails and
    ProvenanceError when the written file does not carry its label.
    """
    try:
        fmt = ExportFormat(fmt)
    except ValueError:
        choices = ", ".join(f.value for f in ExportFormat)
        raise InputError(f"Unknown export format {fmt!r}; choose one of {choices}.") from None
    dest = Path(dest)
    if dest.suffix.lower() != fmt.extension:
        raise InputError(f"{dest.name} does not end in {fmt.extension}; a {fmt.name} export must be named *{fmt.extension}.")
    samples = _checked_samples(samples, sample_rate)
    tags = labels.as_tags()

    with map_exceptions({OSError: AudioError}, f"Cannot write {dest} (check its folder exists and is writable)"), \
            atomic_output(dest) as tmp:
        _encode(samples, sample_rate, fmt, tmp, tags)
        if fmt in (ExportFormat.WAV, ExportFormat.MP3):
            _write_id3(tmp, fmt, tags)
        if seal is not None:
            seal(tmp, fmt)
        _check_written(tmp, fmt, tags)
    log.info("Exported %s (%s, %d bytes)", dest, fmt.value, dest.stat().st_size)
    return dest


def remux_opus_to_m4a(source: Path, dest: Path, labels: ClipLabels, *, seal: Seal | None = None) -> Path:
    """The Opus stream of an Ogg export (`source`), unchanged, in MP4 (M4A) with `labels`, sealed and checked.

    For a personal copy the M4A carries exactly the Ogg's packets: one Opus encode serves both
    files (they were encoded from the same samples with the same settings anyway), and the marks
    read back from the Ogg are the M4A's marks.
    """
    dest = Path(dest)
    if dest.suffix.lower() != ExportFormat.M4A.extension:
        raise InputError(f"{dest.name} does not end in .m4a.")
    tags = labels.as_tags()
    with map_exceptions({OSError: AudioError}, f"Cannot write {dest} (check its folder exists and is writable)"), \
            atomic_output(dest) as tmp:
        args = [require_tool("ffmpeg"), "-v", "error", "-y", "-i", str(source), "-map", "0:a:0", "-c:a", "copy",
                "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", *_metadata_args(tags),
                "-movflags", "+use_metadata_tags", "-f", "mp4", str(tmp)]
        result = subprocess.run(args, capture_output=True, check=False)
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace").strip()
            raise AudioError(f"ffmpeg could not put {source.name}'s Opus into M4A: {stderr or result.returncode}")
        if seal is not None:
            seal(tmp, ExportFormat.M4A)
        _check_written(tmp, ExportFormat.M4A, tags)
    log.info("Exported %s (m4a from %s, %d bytes)", dest, source.name, dest.stat().st_size)
    return dest


def _checked_samples(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    x = checked_mono(samples, sample_rate, step="refusing to export")
    peak = float(np.abs(x).max())
    if peak > 1.0:
        # The loudness stage limits true peak below full scale; this is a bug upstream.
        log.warning("Export input peaks at %.3f (> full scale); clipping", peak)
        x = np.clip(x, -1.0, 1.0)
    return x


def _encoder_args(fmt: ExportFormat, sample_rate: int, tags: dict[str, str]) -> list[str]:
    match fmt:
        case ExportFormat.WAV:
            # Tags go into the INFO chunk; the ID3 chunk is appended afterwards.
            return [*_metadata_args(tags), "-c:a", "pcm_s16le", "-f", "wav"]
        case ExportFormat.MP3:
            # 48 kHz for multiples of 8 kHz, 44.1 kHz for the 22.05 kHz family: integer resampling ratios.
            rate = 48_000 if sample_rate % 8_000 == 0 else 44_100
            return ["-c:a", "libmp3lame", "-b:a", MP3_BITRATE, "-ar", str(rate),
                    "-id3v2_version", "0", "-write_xing", "1", "-f", "mp3"]
        case ExportFormat.OGG:
            return [*_metadata_args(tags), *_opus_args(), "-f", "ogg"]
        case ExportFormat.M4A:
            return [*_metadata_args(tags), *_opus_args(), "-movflags", "+use_metadata_tags", "-f", "mp4"]


def _opus_args() -> list[str]:
    return ["-c:a", "libopus", "-b:a", OPUS_BITRATE, "-application", OPUS_APPLICATION, "-ar", str(OPUS_SAMPLE_RATE)]


def _metadata_args(tags: dict[str, str]) -> list[str]:
    return [arg for key, value in tags.items() for arg in ("-metadata", f"{key}={value}")]


def _encode(samples: np.ndarray, sample_rate: int, fmt: ExportFormat, out: Path, tags: dict[str, str]) -> None:
    args = [
        require_tool("ffmpeg"), "-v", "error", "-y",
        "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
        # bitexact: no encoder-version tag and a fixed Ogg serial, so equal input gives equal bytes.
        "-fflags", "+bitexact", "-flags:a", "+bitexact",
        *_encoder_args(fmt, sample_rate, tags),
        str(out),
    ]
    log.debug("running %s", args)
    result = subprocess.run(args, input=samples.astype("<f4").tobytes(), capture_output=True, check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise AudioError(f"ffmpeg could not encode {fmt.name}: {stderr or f'exit status {result.returncode}'}")


def _write_id3(path: Path, fmt: ExportFormat, tags: dict[str, str]) -> None:
    """Prepend the tag to an MP3, or append it to a WAV as an ``id3 `` chunk."""
    tag = _id3v24_tag(tags)
    if fmt is ExportFormat.MP3:
        path.write_bytes(tag + path.read_bytes())
        return
    with path.open("r+b") as handle:
        riff, _size, wave = struct.unpack("<4sI4s", handle.read(12))
        if riff != b"RIFF" or wave != b"WAVE":
            raise AudioError(f"ffmpeg wrote {path.name} without a RIFF/WAVE header.")
        handle.seek(0, os.SEEK_END)
        if handle.tell() % 2:  # RIFF chunks start on even offsets
            handle.write(b"\x00")
        handle.write(b"id3 " + struct.pack("<I", len(tag)) + tag + b"\x00" * (len(tag) % 2))
        riff_size = handle.tell() - 8
        if riff_size >= 1 << 32:
            raise AudioError(f"{path.name} is over 4 GiB; split the statement into shorter clips.")
        handle.seek(4)
        handle.write(struct.pack("<I", riff_size))


def _id3v24_tag(tags: dict[str, str]) -> bytes:
    """ID3v2.4 with UTF-8 frames: common keys as their standard frames, the rest as TXXX."""
    frames = b"".join(_id3_frame(key, value) for key, value in tags.items())
    return b"ID3\x04\x00\x00" + _syncsafe(len(frames)) + frames


def _id3_frame(key: str, value: str) -> bytes:
    text = value.encode()
    if key == "comment":
        frame_id, body = "COMM", _ID3_UTF8 + b"XXX" + b"\x00" + text  # language unknown, empty description
    elif key in ID3_TEXT_FRAMES:
        frame_id, body = ID3_TEXT_FRAMES[key], _ID3_UTF8 + text
    else:
        frame_id, body = "TXXX", _ID3_UTF8 + key.encode() + b"\x00" + text
    return frame_id.encode("ascii") + _syncsafe(len(body)) + b"\x00\x00" + body


def _syncsafe(n: int) -> bytes:
    if n >= _ID3_MAX_SIZE:
        raise ProvenanceError(f"Label tags are too large for ID3 ({n} bytes); shorten the AI notice.")
    return bytes((n >> shift) & 0x7F for shift in (21, 14, 7, 0))


def _check_written(path: Path, fmt: ExportFormat, tags: dict[str, str]) -> None:
    """Fail closed: the file must decode as what we asked for and carry every label tag."""
    info = probe(path)
    if info.codec != fmt.codec or info.channels != 1:
        raise AudioError(f"ffmpeg wrote {info.codec} with {info.channels} channels, expected mono {fmt.codec}.")
    wrong = sorted(key for key, value in tags.items() if info.tags.get(key.lower()) != value)
    if wrong:
        raise ProvenanceError(
            f"The {fmt.name} export lost its label tags {wrong}; the clip was not written. "
            "Check the ffmpeg build (`ffmpeg -version`) and re-run the export."
        )
