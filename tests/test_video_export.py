"""MP4 video exports through the real ffmpeg: right streams and size, faststart, labelled, captioned, marked.

One short released clip (two sentences of the packaged Piper voice, loudness
normalised and watermarked, exported as the WAV master) is rendered once per
shape and language and shared by the tests. Frames are pulled out with ffmpeg
and checked as pixels: the label band must be there from the first frame to
the last, and captions must change when the speech does, never before.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import synthesise
from pipeline.errors import InputError, ProvenanceError
from pipeline.export import cards
from pipeline.export.captions import Caption, build_captions
from pipeline.export.formats import export_clip
from pipeline.export.probe import decode
from pipeline.export.video import (
    VIDEO_MIME,
    VideoShape,
    caption_segments,
    moov_before_mdat,
    render_video,
    replace_audio,
)
from pipeline.provenance.labels import ClipLabels
from pipeline.provenance.presence import DEFAULT_PRESENCE_THRESHOLD, PresenceMark

pytestmark = pytest.mark.slow

SENTENCES = [
    "Our message today is simple.",
    "We ask the court to hear the case in public, and we thank everyone who stood with us.",
]
URDU_SENTENCES = [
    "ہمارا پیغام آج بہت سادہ ہے۔",
    "ہم عدالت سے کہتے ہیں کہ مقدمے کی سماعت کھلی عدالت میں ہو، "
    "اور ہم ان سب کا شکریہ ادا کرتے ہیں جو ہمارے ساتھ کھڑے رہے۔",
]
DURATION_TOLERANCE_S = 0.1  # an AAC frame (21 ms) plus a video frame (50 ms), with room
AMBER = np.array(cards.LABEL_BAND_COLOUR, dtype=float)


@dataclass(frozen=True)
class Clip:
    wav: Path
    samples: np.ndarray
    rate: int
    timeline: list[dict]
    captions: list[Caption]


@dataclass(frozen=True)
class Rendered:
    path: Path
    shape: VideoShape
    captions: list[Caption]
    progress: list[float]


def labels_for(lang: str) -> ClipLabels:
    return ClipLabels(
        clip_id="clip-0042", statement_id=42, voice_id="joe", voice_name="Joe Example",
        organisation="Free Joe Campaign", language=lang, ai_notice="AI-generated voice of Joe Example.",
        created_at="2026-03-01T12:00:00+00:00",
    )


@pytest.fixture(scope="module")
def presence() -> PresenceMark:
    return PresenceMark().load()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, piper_voice: tuple[Path, Path], presence: PresenceMark) -> Clip:
    from pipeline.quality.asr import Transcriber

    audio, rate, timeline = synthesise(SENTENCES, piper_voice)
    marked, _score = presence.embed_and_verify(audio, rate)
    wav = export_clip(marked, rate, "wav", tmp_path_factory.mktemp("clip") / "clip.wav", labels_for("en"))
    words = Transcriber().load().transcribe(marked, rate, word_timings=True).words
    return Clip(wav, marked, rate, timeline, build_captions(timeline, words, lang="en"))


@pytest.fixture(scope="module")
def render(clip: Clip, tmp_path_factory: pytest.TempPathFactory) -> Callable[[VideoShape, str], Rendered]:
    """Render (once) the clip in a shape and caption language."""
    folder = tmp_path_factory.mktemp("videos")
    done: dict[tuple[VideoShape, str], Rendered] = {}

    def get(shape: VideoShape, lang: str = "en") -> Rendered:
        if (shape, lang) not in done:
            captions = clip.captions
            if lang == "ur":  # Urdu text over the same sentence timings: the picture is what is tested
                timeline = [{**entry, "text": text} for entry, text in zip(clip.timeline, URDU_SENTENCES)]
                captions = build_captions(timeline, lang="ur")
            marks: list[float] = []
            path = render_video(clip.wav, folder / f"{lang}-{shape.value}.mp4", shape=shape, labels=labels_for(lang),
                                captions=captions, progress=marks.append)
            done[(shape, lang)] = Rendered(path, shape, captions, marks)
        return done[(shape, lang)]

    return get


# --- container and streams ---------------------------------------------------------------


@pytest.mark.parametrize("shape", list(VideoShape))
def test_mp4_is_h264_and_aac_at_the_shape_size_and_clip_length(render, clip: Clip, shape: VideoShape) -> None:
    info = ffprobe(render(shape).path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", *shape.size)
    assert video["pix_fmt"] == "yuv420p"  # the only H.264 flavour every phone plays
    assert audio["codec_name"] == "aac"
    clip_s = len(clip.samples) / clip.rate
    assert float(info["format"]["duration"]) == pytest.approx(clip_s, abs=DURATION_TOLERANCE_S)
    assert float(video["duration"]) == pytest.approx(clip_s, abs=DURATION_TOLERANCE_S)


@pytest.mark.parametrize("shape", list(VideoShape))
def test_mp4_is_faststart(render, shape: VideoShape) -> None:
    """The index (moov) comes before the media (mdat), so players start before the download ends."""
    atoms = top_level_atoms(render(shape).path)
    assert atoms.index("moov") < atoms.index("mdat"), atoms
    assert moov_before_mdat(render(shape).path)


def test_mp4_carries_the_label_tags(render) -> None:
    tags = ffprobe(render(VideoShape.SQUARE).path)["format"]["tags"]
    expected = labels_for("en").as_tags()
    assert {key: tags.get(key) for key in expected} == expected


def test_mp4_audio_keeps_the_presence_mark(render, presence: PresenceMark) -> None:
    samples, rate = decode(render(VideoShape.VERTICAL).path)
    assert presence.detect(samples, rate) >= DEFAULT_PRESENCE_THRESHOLD


def test_mp4_audio_is_in_sync_with_the_master(render, clip: Clip) -> None:
    """AAC priming is compensated: the audio neither leads nor lags the master (captions rely on it)."""
    samples, rate = decode(render(VideoShape.SQUARE).path, sr=clip.rate)
    n = min(len(samples), len(clip.samples))
    lags = range(-480, 481, 8)  # ±10 ms at 48 kHz
    scores = [float(np.dot(np.roll(samples[:n], -lag), clip.samples[:n])) for lag in lags]
    assert abs(lags[int(np.argmax(scores))]) <= 48  # 1 ms


def test_progress_runs_from_zero_to_one(render) -> None:
    marks = render(VideoShape.SQUARE).progress
    assert marks and marks[-1] == 1.0
    assert all(0.0 <= a <= b <= 1.0 for a, b in zip(marks, marks[1:]))


# --- pixels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "lang"), [(VideoShape.SQUARE, "en"), (VideoShape.VERTICAL, "en"),
                                             (VideoShape.LANDSCAPE, "en"), (VideoShape.VERTICAL, "ur")])
def test_label_band_is_visible_for_the_whole_duration(render, clip: Clip, shape: VideoShape, lang: str) -> None:
    video = render(shape, lang)
    layout = cards.layout_for(*shape.size)
    left, top, right, bottom = layout.band
    end = len(clip.samples) / clip.rate
    for t in (0.0, end / 2, end - 0.1):
        frame = grab_frame(video.path, t, shape)
        band = frame[top:bottom, left:right].astype(float)
        amber = np.linalg.norm(band - AMBER, axis=2) < 40
        dark = band.max(axis=2) < 90  # the label's text
        assert amber.mean() > 0.6, f"label band colour at {t:.2f} s covers only {amber.mean():.0%}"
        assert dark.mean() > 0.02, f"label band has no text at {t:.2f} s"
        below = frame[bottom + 10 : bottom + 40].astype(float)
        assert (np.linalg.norm(below - AMBER, axis=2) < 40).mean() < 0.05  # the band ends where it should


def test_captions_change_with_the_speech_and_never_before(render) -> None:
    video = render(VideoShape.SQUARE)
    assert len(video.captions) >= 3
    for previous, caption in zip(video.captions, video.captions[1:]):
        before = caption_area(grab_frame(video.path, caption.start - 0.12, video.shape), video.shape)
        after = caption_area(grab_frame(video.path, caption.start + 0.12, video.shape), video.shape)
        shown_before = caption_area(grab_frame(video.path, (previous.start + previous.end) / 2, video.shape),
                                    video.shape)
        assert np.abs(after.astype(int) - before.astype(int)).mean() > 2, f"caption at {caption.start} s not shown"
        assert np.abs(before.astype(int) - shown_before.astype(int)).mean() < 1, f"{caption.text!r} shown early"


@pytest.mark.parametrize("shape", [VideoShape.SQUARE, VideoShape.VERTICAL])
def test_urdu_caption_frame_has_text(render, shape: VideoShape) -> None:
    video = render(shape, "ur")
    first = video.captions[0]
    area = caption_area(grab_frame(video.path, (first.start + first.end) / 2, shape), shape)
    text = area.min(axis=2) > 200  # white caption text on the dark box
    assert text.mean() > 0.01, f"only {text.mean():.2%} text pixels in the Urdu caption"


# --- cards, without ffmpeg ----------------------------------------------------------------------


def test_arabic_script_is_shaped_not_drawn_letter_by_letter() -> None:
    """Joined Urdu letters are narrower than the same letters drawn in isolation; unshaped text is not."""
    word = "مصنوعی"
    joined = cards.measure_line(word, size=48, bold=False, lang="ur")
    isolated = sum(cards.measure_line(ch, size=48, bold=False, lang="ur") for ch in word)
    assert joined < 0.9 * isolated


def test_portrait_replaces_the_initials(tmp_path: Path) -> None:
    from PIL import Image

    voice_dir = tmp_path / "voice"
    voice_dir.mkdir()
    Image.new("RGB", (400, 500), (200, 20, 20)).save(voice_dir / "portrait.jpg")
    portrait = cards.find_portrait(voice_dir)
    assert portrait == voice_dir / "portrait.jpg"
    layout = cards.layout_for(1080, 1080)
    card = np.asarray(cards.render_card(layout, labels_for("en"), portrait))
    x, y = layout.portrait_centre
    assert np.abs(card[y + layout.portrait_diameter // 4, x].astype(int) - (200, 20, 20)).max() < 30


def test_unreadable_portrait_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "portrait.png").write_bytes(b"not a picture")
    with pytest.raises(InputError, match="portrait"):
        cards.render_card(cards.layout_for(1080, 1080), labels_for("en"), tmp_path / "portrait.png")


def test_text_no_font_can_draw_is_refused_not_burnt_in_as_boxes() -> None:
    layout = cards.layout_for(1080, 1920)
    card = cards.render_card(layout, labels_for("en"))
    with pytest.raises(InputError, match="No installed font"):
        cards.render_caption_strip(card, layout, Caption(0.0, 1.0, ("语音",)), "zh")


def test_caption_segments_start_on_frames_never_early() -> None:
    captions = [Caption(0.0, 1.01, ("One",)), Caption(1.01, 2.5, ("Two",)), Caption(3.0, 9.0, ("Three",))]
    segments = caption_segments(captions, duration=4.0, fps=20)
    assert [(round(s, 3), c.text if c else None) for s, c in segments] == [
        (0.0, "One"), (1.05, "Two"), (2.5, None), (3.0, "Three")]


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"dest": "clip.mov"},  # wrong suffix
        {"audio": "missing.wav"},  # no audio
        {"shape": "mp4-portrait"},  # unknown shape
        {"portrait": "missing.png"},  # named portrait absent
    ],
)
def test_bad_requests_are_refused_and_leave_nothing(clip: Clip, tmp_path: Path, change: dict) -> None:
    args = {"dest": "clip.mp4", "audio": None, "shape": "mp4-square", "portrait": None, **change}
    with pytest.raises(InputError):
        render_video(
            tmp_path / args["audio"] if args["audio"] else clip.wav, tmp_path / args["dest"], shape=args["shape"],
            labels=labels_for("en"), captions=[],
            portrait=tmp_path / args["portrait"] if args["portrait"] else None,
        )
    assert list(tmp_path.iterdir()) == []


def test_render_replaces_an_existing_file_and_leaves_no_temporaries(clip: Clip, tmp_path: Path) -> None:
    dest = tmp_path / "clip.mp4"
    dest.write_bytes(b"old")
    render_video(clip.wav, dest, shape=VideoShape.LANDSCAPE, labels=labels_for("en"), captions=clip.captions[:1])
    assert moov_before_mdat(dest)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_a_recipients_copy_keeps_the_picture_and_takes_their_sound(render, clip: Clip, tmp_path: Path) -> None:
    """replace_audio: the H.264 stream is copied bit for bit; the audio is the new file's."""
    source = render(VideoShape.VERTICAL).path
    theirs = export_clip(-clip.samples, clip.rate, "wav", tmp_path / "theirs.wav", labels_for("en"))  # inverted
    copy = replace_audio(source, theirs, tmp_path / "copy.mp4", shape="mp4-vertical", labels=labels_for("en"))
    assert moov_before_mdat(copy) and ffprobe(copy)["format"]["tags"]["AI_GENERATED"] == "true"
    assert stream_md5(copy, "v") == stream_md5(source, "v")
    (ours, _), (new, _) = decode(source, 16_000), decode(copy, 16_000)
    n = min(len(ours), len(new))
    assert np.corrcoef(ours[:n], new[:n])[0, 1] < -0.9  # the inverted sound, not the source's
    with pytest.raises(InputError):
        replace_audio(source, tmp_path / "missing.wav", tmp_path / "other.mp4", shape="mp4-vertical",
                      labels=labels_for("en"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.mp4", "theirs.wav"]


# --- content credentials ----------------------------------------------------------------------------


def test_seal_signs_the_finished_file_before_it_takes_its_name(clip: Clip, tmp_path: Path) -> None:
    """The caller's C2PA seal gets a complete faststart MP4; the signed file keeps faststart and its labels."""
    from datetime import datetime, timezone

    from pipeline.provenance.credentials import (
        ClipProvenance,
        CredentialStatus,
        create_identity,
        embed_credentials,
        load_identity,
        read_credentials,
    )

    create_identity(tmp_path / "c2pa", "Free Joe Campaign", now=datetime.now(timezone.utc))
    identity = load_identity(tmp_path / "c2pa")
    manifest = ClipProvenance(
        clip_id=42, organisation="Free Joe Campaign", voice_id="joe", voice_name="Joe Example", consent_id=1,
        consent_sha256="ab" * 32, statement_id=42, revision=1, revision_sha256="cd" * 32, language="en",
        created_at=datetime(2026, 3, 1, 12, tzinfo=timezone.utc), approvals=(), settings={"engine": "piper"},
    ).manifest()
    sealed: list[Path] = []

    def seal(tmp: Path) -> None:
        assert tmp.name.startswith(".clip.mp4.") and moov_before_mdat(tmp)
        sealed.append(tmp)
        embed_credentials(tmp, VIDEO_MIME, manifest, identity)

    dest = render_video(clip.wav, tmp_path / "clip.mp4", shape=VideoShape.SQUARE, labels=labels_for("en"),
                        captions=clip.captions, seal=seal)
    assert len(sealed) == 1 and not sealed[0].exists()
    assert read_credentials(dest, identity.trust).status is CredentialStatus.TRUSTED
    assert moov_before_mdat(dest)


def test_a_failing_seal_leaves_no_video(clip: Clip, tmp_path: Path) -> None:
    def seal(tmp: Path) -> None:
        raise ProvenanceError("signing key unavailable")

    with pytest.raises(ProvenanceError, match="signing key"):
        render_video(clip.wav, tmp_path / "clip.mp4", shape=VideoShape.SQUARE, labels=labels_for("en"),
                     captions=[], seal=seal)
    assert list(tmp_path.iterdir()) == []


# --- helpers ------------------------------------------------------------------------------------------


def stream_md5(path: Path, kind: str) -> str:
    """MD5 of one stream's packets, as ffmpeg's md5 muxer computes it."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:{kind}:0", "-c", "copy", "-f", "md5",
                          "-"], capture_output=True, text=True, check=True).stdout
    return out.strip()


def ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def top_level_atoms(path: Path) -> list[str]:
    data, atoms, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        atoms.append(kind)
        offset += size if size else len(data)
    return atoms


def grab_frame(path: Path, t: float, shape: VideoShape) -> np.ndarray:
    """The frame shown at `t` seconds, as RGB (height, width, 3)."""
    width, height = shape.size
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{max(t, 0.0):.3f}", "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def caption_area(frame: np.ndarray, shape: VideoShape) -> np.ndarray:
    left, top, right, bottom = cards.layout_for(*shape.size).captions
    return frame[top:bottom, left:right]
