"""Render a released clip as an MP4 for social video: still card, moving waveform, captions, AI label.

One ffmpeg run per video, written atomically like the audio exports
(`pipeline.export.formats`): a hidden ``.<name>.*.part`` file next to `dest`,
read back with ffprobe, then `os.replace`. The picture is three layers:

* the card (`pipeline.export.cards`): background, the AI label band across
  the top, the portrait or an initials disc, name and organisation. It is
  one PNG, decoded once and repeated by the ``loop`` filter;
* the caption strip: one small PNG per caption, played by the concat
  demuxer at the caption's start time (rounded *up* to a frame, so never
  early) and held until the next;
* the waveform: ffmpeg ``showwaves`` on the clip's audio, the only thing
  that moves.

So all text is drawn by Pillow (see `cards` for why) and ffmpeg's filter
graph holds no text or paths at all. The picture is nearly still, so x264
``veryfast`` with ``-tune stillimage`` at CRF 23 keeps it sharp, and 20
frames per second are plenty for a waveform. Measured with
scripts/bench_video.py on this project's 2-core machine while other work
kept its load average near 9, for a 66.9 s clip: square 8.8 s, vertical
15.9 s, landscape 16.6 s (0.13-0.25x the clip's duration; ffmpeg CPU 9.3,
14.9 and 15.2 s), about 1 Mbit/s. Each frame costs x264 the same whether it
changes or not, so `VideoSettings(fps=15)` is the lever if that must drop
(about a fifth less).

Content credentials (C2PA) are not made here: the caller passes a `seal`
(`pipeline.provenance.credentials.embed_credentials` with `VIDEO_MIME`), as
for the audio exports. It runs on the finished temporary file, before the
read-back check and the rename, so the check reads the signed bytes (still
faststart, still labelled) and a video that fails to sign never takes its
final name. Without a seal the file is unsigned, for a caller that signs later.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final

from pipeline.errors import AudioError, InputError, ProvenanceError, map_exceptions
from pipeline.export import cards
from pipeline.export.captions import Caption
from pipeline.export.probe import probe, require_tool
from pipeline.provenance.labels import ClipLabels
from pipeline.store.files import atomic_output

log = logging.getLogger(__name__)

DEFAULT_FPS: Final = 20
DEFAULT_CRF: Final = 23
DEFAULT_PRESET: Final = "veryfast"
DEFAULT_TUNE: Final = "stillimage"
#: Motion search and B-frames find nothing to exploit in a still card and an oscillating
#: waveform: dropping them saves about 30 % of the encode for 5 % more bytes (scripts/bench_video.py).
DEFAULT_X264_PARAMS: Final = "me=dia:subme=1:bframes=0"
AUDIO_BITRATE: Final = "128k"
#: The master is mono speech; every player we target plays mono AAC on both speakers.
AUDIO_CHANNELS: Final = 1
AUDIO_RATE: Final = 48_000
#: Video and audio may differ by an AAC frame plus a video frame; more means a broken encode.
DURATION_TOLERANCE_S: Final = 0.15
WAVE_COLOUR: Final = "0xE8EEF8"

VIDEO_MIME: Final = "video/mp4"

Seal = Callable[[Path], None]
"""Signs the finished MP4 in place (content credentials); raises to stop the export."""

Progress = Callable[[float], None]
"""Called with the fraction done (0..1) as ffmpeg reports its position."""


class VideoShape(str, Enum):
    """Frame sizes a clip is released in; the value is what ``--format mp4-<value>`` names."""

    SQUARE = "square"
    VERTICAL = "vertical"
    LANDSCAPE = "landscape"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return _SIZES[self]

    @property
    def export_format(self) -> str:
        return f"mp4-{self.value}"

    @classmethod
    def from_format(cls, name: str) -> VideoShape:
        """``mp4-square`` (or just ``square``) to a shape; InputError naming the choices."""
        try:
            return cls(name.removeprefix("mp4-"))
        except ValueError:
            choices = ", ".join(shape.export_format for shape in cls)
            raise InputError(f"Unknown video format {name!r}; choose one of {choices}.") from None


_SIZES: Final = {VideoShape.SQUARE: (1080, 1080), VideoShape.VERTICAL: (1080, 1920),
                 VideoShape.LANDSCAPE: (1920, 1080)}


@dataclass(frozen=True)
class VideoSettings:
    """Encoder choices; the defaults are what releases use."""

    fps: int = DEFAULT_FPS
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET
    tune: str | None = DEFAULT_TUNE
    x264_params: str | None = DEFAULT_X264_PARAMS
    audio_bitrate: str = AUDIO_BITRATE


@dataclass(frozen=True)
class VideoInfo:
    """What ffprobe finds in a rendered MP4."""

    video_codec: str
    width: int
    height: int
    audio_codec: str
    duration: float
    tags: dict[str, str]


def render_video(
    audio_path: Path,
    dest: Path,
    *,
    shape: VideoShape | str,
    labels: ClipLabels,
    captions: Sequence[Caption],
    portrait: Path | None = None,
    progress: Progress | None = None,
    seal: Seal | None = None,
    settings: VideoSettings | None = None,
) -> Path:
    """Render `audio_path` (the released clip) as an MP4 at `dest`; return `dest`.

    Replaces an existing `dest` atomically. Raises InputError for bad
    arguments, AudioError when ffmpeg fails or writes something other than
    H.264 + AAC of the clip's length, and ProvenanceError when the label
    tags did not survive; whatever `seal` raises stops the export too.
    """
    shape = VideoShape.from_format(shape) if isinstance(shape, str) else shape
    settings = settings or VideoSettings()
    dest, audio_path = Path(dest), Path(audio_path)
    if dest.suffix.lower() != ".mp4":
        raise InputError(f"{dest.name} does not end in .mp4; a video export must be named *.mp4.")
    if not audio_path.is_file():
        raise InputError(f"The clip audio {audio_path} does not exist; export the clip's WAV master first.")
    if portrait is not None and not Path(portrait).is_file():
        raise InputError(f"The voice portrait {portrait} does not exist; pass portrait=None for a generated card.")
    duration = probe(audio_path).duration
    if duration <= 0:
        raise AudioError(f"{audio_path} has no duration; it cannot be made into a video.")
    layout = cards.layout_for(*shape.size)

    def encode(work: Path, out: Path) -> None:
        args = _prepare(work, audio_path, out, layout, labels, captions, portrait, duration, settings)
        _run_ffmpeg(args, duration, progress, work / "ffmpeg.log")

    _write_checked(dest, encode, shape=shape, duration=duration, labels=labels, seal=seal)
    if progress is not None:
        progress(1.0)
    return dest


def replace_audio(video: Path, audio_path: Path, dest: Path, *, shape: VideoShape | str, labels: ClipLabels,
                  seal: Seal | None = None, settings: VideoSettings | None = None) -> Path:
    """`video` with its sound replaced by `audio_path` (a copy marked for one recipient); return `dest`.

    The picture is copied bit for bit (the waveform of two copies differs by a
    mark 25 dB down, invisible at this size), so this costs an AAC encode and a
    remux, not the picture's full encode. Checked and sealed as `render_video`.
    """
    shape = VideoShape.from_format(shape) if isinstance(shape, str) else shape
    settings = settings or VideoSettings()
    dest, video, audio_path = Path(dest), Path(video), Path(audio_path)
    for path in (video, audio_path):
        if not path.is_file():
            raise InputError(f"{path} does not exist; make the clip's video and the recipient's audio first.")
    duration = probe(audio_path).duration
    metadata = [arg for key, value in labels.as_tags().items() for arg in ("-metadata", f"{key}={value}")]

    def remux(work: Path, out: Path) -> None:
        args = [require_tool("ffmpeg"), "-v", "error", "-nostdin", "-y", "-nostats", "-progress", "pipe:1",
                "-i", str(video), "-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                "-c:a", "aac", "-b:a", settings.audio_bitrate, "-ar", str(AUDIO_RATE), "-ac", str(AUDIO_CHANNELS),
                "-t", f"{duration:.6f}", "-map_metadata", "-1", *metadata,
                "-movflags", "+faststart+use_metadata_tags", "-f", "mp4", str(out)]
        _run_ffmpeg(args, duration, None, work / "ffmpeg.log")

    return _write_checked(dest, remux, shape=shape, duration=duration, labels=labels, seal=seal)


def _write_checked(dest: Path, make: Callable[[Path, Path], None], *, shape: VideoShape, duration: float,
                   labels: ClipLabels, seal: Seal | None) -> Path:
    """Run `make(work_dir, part_file)`, seal, check and rename into `dest`: never a half-made video under its name."""
    with map_exceptions({OSError: AudioError}, f"Cannot write {dest} (check its folder exists and is writable)"), \
            atomic_output(dest) as tmp, \
            tempfile.TemporaryDirectory(prefix=f".{dest.name}.", suffix=".work", dir=dest.parent) as work:
        make(Path(work), tmp)
        if seal is not None:
            seal(tmp)
        info = check_video(tmp, shape=shape, duration=duration, tags=labels.as_tags())
    log.info("Wrote %s (%s, %.1f s, %d bytes)", dest, shape.value, info.duration, dest.stat().st_size)
    return dest


def check_video(path: Path, *, shape: VideoShape, duration: float, tags: dict[str, str]) -> VideoInfo:
    """Fail closed: H.264 at the shape's size, AAC, the clip's length, faststart, every label tag."""
    info = probe_video(path)
    width, height = shape.size
    if (info.video_codec, info.width, info.height, info.audio_codec) != ("h264", width, height, "aac"):
        raise AudioError(
            f"ffmpeg wrote {info.video_codec} {info.width}x{info.height} with {info.audio_codec or 'no'} audio, "
            f"expected h264 {width}x{height} with aac; check the ffmpeg build (`ffmpeg -encoders`)."
        )
    if abs(info.duration - duration) > DURATION_TOLERANCE_S:
        raise AudioError(f"The video runs {info.duration:.2f} s but the clip {duration:.2f} s; the encode is broken.")
    if not moov_before_mdat(path):
        raise AudioError(f"{path.name} is not faststart (its index follows the media); players would have to "
                         "download it whole before playing.")
    wrong = sorted(key for key, value in tags.items() if info.tags.get(key.lower()) != value)
    if wrong:
        raise ProvenanceError(
            f"The MP4 export lost its label tags {wrong}; the video was not written. "
            "Check the ffmpeg build (`ffmpeg -version`) and re-run the export."
        )
    return info


def probe_video(path: Path) -> VideoInfo:
    """The first video and audio streams of `path`, as ffprobe sees them."""
    result = subprocess.run(
        [require_tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise AudioError(f"ffprobe could not read {path}: {result.stderr.strip() or result.returncode}")
    data: dict[str, Any] = json.loads(result.stdout)
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), {})
    audio = next((s for s in streams if s.get("codec_type") == "audio"), {})
    fmt = data.get("format", {})
    return VideoInfo(
        video_codec=video.get("codec_name", ""),
        width=int(video.get("width", 0)),
        height=int(video.get("height", 0)),
        audio_codec=audio.get("codec_name", ""),
        duration=float(fmt.get("duration") or 0.0),
        tags={k.lower(): v for k, v in fmt.get("tags", {}).items()},
    )


def moov_before_mdat(path: Path) -> bool:
    """True if the MP4's index (``moov``) precedes its media (``mdat``): playable while downloading."""
    order: list[bytes] = []
    with Path(path).open("rb") as handle:
        size_total = os.fstat(handle.fileno()).st_size
        offset = 0
        while offset + 8 <= size_total and len(order) < 64:
            handle.seek(offset)
            header = handle.read(8)
            size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if size == 1:  # 64-bit size follows the type
                size = int.from_bytes(handle.read(8), "big")
            elif size == 0:  # runs to the end of the file
                size = size_total - offset
            if size < 8:
                break
            order.append(kind)
            offset += size
    return b"moov" in order and b"mdat" in order and order.index(b"moov") < order.index(b"mdat")


def caption_segments(captions: Sequence[Caption], duration: float, fps: int) -> list[tuple[float, Caption | None]]:
    """(start, caption or None for no caption) pieces covering 0..duration, starts on frame times.

    Starts are rounded *up* to the next frame, so a caption never appears
    before its time; a caption that would last no frame is dropped.
    """
    def frame_time(t: float) -> float:
        return math.ceil(t * fps - 1e-6) / fps

    segments: list[tuple[float, Caption | None]] = [(0.0, None)]
    for caption in captions:
        start, end = frame_time(caption.start), min(frame_time(caption.end), duration)
        if start >= end or start < segments[-1][0]:
            continue
        if start == segments[-1][0]:
            segments[-1] = (start, caption)
        else:
            segments.append((start, caption))
        segments.append((end, None))
    if segments[-1][0] >= duration and len(segments) > 1:
        segments.pop()
    return segments


# --- the ffmpeg run ---------------------------------------------------------------


def _prepare(
    work: Path, audio: Path, out: Path, layout: cards.CardLayout, labels: ClipLabels,
    captions: Sequence[Caption], portrait: Path | None, duration: float, settings: VideoSettings,
) -> list[str]:
    """Draw the card and caption strips into `work`; return the ffmpeg arguments."""
    card = cards.render_card(layout, labels, portrait)
    card.save(work / "card.png", compress_level=1)
    segments = caption_segments(captions, duration, settings.fps)
    blank = cards.render_caption_strip(card, layout, None, labels.language)
    blank.save(work / "strip-blank.png", compress_level=1)
    lines = []
    for number, (start, caption) in enumerate(segments):
        name = "strip-blank.png"
        if caption is not None:
            name = f"strip-{number:05d}.png"
            cards.render_caption_strip(card, layout, caption, labels.language).save(work / name, compress_level=1)
        end = segments[number + 1][0] if number + 1 < len(segments) else duration
        # Plain file names next to the list, so nothing needs quoting; framerate 1000 gives
        # millisecond timestamps (the image demuxer's default 1/25 s would round starts).
        lines += [f"file '{name}'", "option framerate 1000", f"duration {end - start:.6f}"]
    lines += [f"file '{name}'", "option framerate 1000"]  # the concat demuxer drops the last duration otherwise
    (work / "captions.txt").write_text("\n".join(lines) + "\n")

    fps = settings.fps
    cx, cy = layout.captions[:2]
    wx, wy, wr, wb = layout.wave
    to_bt709 = "scale=out_color_matrix=bt709:out_range=tv"
    graph = ";".join([
        f"[0:v]{to_bt709},format=yuv420p,loop=loop=-1:size=1,setpts=N/FRAME_RATE/TB[card]",
        f"[2:v]{to_bt709},format=yuv420p[strip]",
        f"[1:a]aformat=channel_layouts=mono,showwaves=s={wr - wx}x{wb - wy}:mode=cline:draw=full:scale=sqrt:rate={fps}"
        f":colors={WAVE_COLOUR},format=rgba,{to_bt709},format=yuva420p[wave]",
        f"[card][strip]overlay=x={cx}:y={cy}:eof_action=repeat:format=yuv420[captioned]",
        f"[captioned][wave]overlay=x={wx}:y={wy}:format=yuv420:shortest=1[v]",
    ])
    tune = ["-tune", settings.tune] if settings.tune else []
    x264_params = ["-x264-params", settings.x264_params] if settings.x264_params else []
    metadata = [arg for key, value in labels.as_tags().items() for arg in ("-metadata", f"{key}={value}")]
    return [
        require_tool("ffmpeg"), "-v", "error", "-nostdin", "-y", "-nostats", "-progress", "pipe:1",
        "-framerate", str(fps), "-i", str(work / "card.png"),
        "-i", str(audio),
        "-f", "concat", "-safe", "0", "-i", str(work / "captions.txt"),
        "-filter_complex", graph,
        "-map", "[v]", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", settings.preset, *tune, *x264_params, "-crf", str(settings.crf),
        "-pix_fmt", "yuv420p", "-profile:v", "high", "-r", str(fps),
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        "-c:a", "aac", "-b:a", settings.audio_bitrate, "-ar", str(AUDIO_RATE), "-ac", str(AUDIO_CHANNELS),
        "-t", f"{duration:.6f}",
        *metadata,
        # use_metadata_tags: without it the MP4 muxer keeps only iTunes keys and drops AI_GENERATED & co.
        "-movflags", "+faststart+use_metadata_tags",
        "-f", "mp4", str(out),
    ]


def _run_ffmpeg(args: list[str], duration: float, progress: Progress | None, log_path: Path) -> None:
    """Run ffmpeg, turning its ``-progress`` lines into fractions; AudioError with its stderr on failure."""
    log.debug("running %s", args)
    with log_path.open("w+b") as stderr:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                key, _, value = raw.decode(errors="replace").strip().partition("=")
                if progress is not None and key == "out_time_us" and value.lstrip("-").isdigit():
                    progress(min(max(int(value) / 1e6 / duration, 0.0), 1.0))
            returncode = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        stderr.seek(0)
        message = stderr.read().decode(errors="replace").strip()
    if returncode != 0:
        raise AudioError(f"ffmpeg could not render the video: {message or f'exit status {returncode}'}")
