"""Exports through the real ffmpeg: right codec, right length, labelled, atomic, still marked.

Also covers the label and disclosure texts the exports carry.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import AudioError, InputError, ProvenanceError, VoxgateError
from pipeline.export.formats import ExportFormat, export_clip
from pipeline.export.probe import ProbeInfo, decode, probe
from pipeline.provenance.disclosure import disclosure_text
from pipeline.provenance.labels import ClipLabels, ai_notice
from pipeline.provenance.presence import PresenceMark

# Encoder priming and padding: measured 38 ms for MP3 (LAME), 7 ms for Opus.
DURATION_TOLERANCE_S = 0.060
EXPECTED = {  # format: (codec, sample rate for a 22,050 Hz source)
    ExportFormat.WAV: ("pcm_s16le", 22_050),
    ExportFormat.MP3: ("mp3", 44_100),
    ExportFormat.OGG: ("opus", 48_000),
    ExportFormat.M4A: ("opus", 48_000),  # Opus in MP4: messaging apps' codec, in a container C2PA can sign
}


@pytest.fixture(scope="module")
def labels() -> ClipLabels:
    return ClipLabels(
        clip_id="clip-0007",
        statement_id=42,
        voice_id="joe",
        voice_name="Joe Example",
        organisation="Free Joe Campaign",
        language="en",
        ai_notice=ai_notice(owner="Joe Example", organisation="Free Joe Campaign"),
        created_at="2026-03-01T12:00:00+01:00",
    )


@pytest.fixture(scope="module")
def exports(
    speech_clip: tuple[np.ndarray, int], labels: ClipLabels, tmp_path_factory: pytest.TempPathFactory
) -> dict[ExportFormat, Path]:
    samples, sr = speech_clip
    out = tmp_path_factory.mktemp("exports")
    return {fmt: export_clip(samples, sr, fmt, out / f"clip{fmt.extension}", labels) for fmt in ExportFormat}


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_export_has_expected_stream(
    exports: dict[ExportFormat, Path], speech_clip: tuple[np.ndarray, int], fmt: ExportFormat
) -> None:
    samples, sr = speech_clip
    info = probe(exports[fmt])
    assert (info.codec, info.sample_rate, info.channels) == (*EXPECTED[fmt], 1)
    assert info.duration == pytest.approx(len(samples) / sr, abs=DURATION_TOLERANCE_S)


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_export_carries_every_label_tag(exports: dict[ExportFormat, Path], labels: ClipLabels, fmt: ExportFormat) -> None:
    tags = probe(exports[fmt]).tags
    assert tags["ai_generated"] == "true"
    assert tags["voxgate_clip_id"] == "clip-0007"
    assert tags["label"] == labels.ai_notice
    assert tags["artist"] == "Joe Example (AI-generated voice)"
    assert {k.lower(): v for k, v in labels.as_tags().items()}.items() <= tags.items()


def test_wav_master_has_info_and_id3_chunks(exports: dict[ExportFormat, Path]) -> None:
    chunks = _riff_chunks(exports[ExportFormat.WAV].read_bytes())
    assert [cid for cid, _ in chunks] == [b"fmt ", b"LIST", b"data", b"id3 "]
    assert dict(chunks)[b"LIST"].startswith(b"INFO")


def test_wav_id3_chunk_is_read_by_ffmpeg_itself(exports: dict[ExportFormat, Path], tmp_path: Path) -> None:
    """ffmpeg ignores a WAV's ID3 chunk when INFO is present; without INFO it must read ours,
    which proves the hand-built ID3v2.4 tag is standard and not just readable by our reader."""
    chunks = [(cid, body) for cid, body in _riff_chunks(exports[ExportFormat.WAV].read_bytes()) if cid != b"LIST"]
    body = b"WAVE" + b"".join(cid + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) % 2) for cid, data in chunks)
    id3_only = tmp_path / "id3-only.wav"
    id3_only.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    tags = _ffprobe_tags(id3_only)
    assert tags["AI_GENERATED"] == "true"
    assert tags["VOXGATE_CLIP_ID"] == "clip-0007"
    assert tags["comment"].startswith("AI-generated voice.")


def test_mp3_notice_is_a_real_comment_frame(exports: dict[ExportFormat, Path]) -> None:
    """Regression: ffmpeg writes `comment` as TXXX, which players do not show; we write COMM."""
    head = exports[ExportFormat.MP3].read_bytes()[:4096]
    assert head.startswith(b"ID3\x04")
    assert b"COMM" in head


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_export_is_byte_reproducible(
    exports: dict[ExportFormat, Path], speech_clip: tuple[np.ndarray, int], labels: ClipLabels,
    tmp_path: Path, fmt: ExportFormat,
) -> None:
    """Same samples and labels give the same bytes (bitexact; fixed Ogg serial): checksums are stable."""
    again = export_clip(*speech_clip, fmt, tmp_path / f"again{fmt.extension}", labels)
    assert again.read_bytes() == exports[fmt].read_bytes()


def test_presence_mark_survives_opus_export(
    speech_clip: tuple[np.ndarray, int], labels: ClipLabels, tmp_path: Path
) -> None:
    presence = PresenceMark().load()
    marked, _score = presence.embed_and_verify(*speech_clip)
    ogg = export_clip(marked, speech_clip[1], ExportFormat.OGG, tmp_path / "marked.ogg", labels)
    decoded, rate = decode(ogg)
    assert presence.detect(decoded, rate) >= 0.99  # measured 1.000 at Opus 32k voip


def test_export_into_missing_directory_fails_and_writes_nothing(
    speech_clip: tuple[np.ndarray, int], labels: ClipLabels, tmp_path: Path
) -> None:
    with pytest.raises(VoxgateError, match="Cannot write"):
        export_clip(*speech_clip, ExportFormat.WAV, tmp_path / "missing" / "clip.wav", labels)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_export_into_read_only_directory_fails_and_writes_nothing(
    speech_clip: tuple[np.ndarray, int], labels: ClipLabels, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(VoxgateError):
        export_clip(*speech_clip, ExportFormat.MP3, locked / "clip.mp3", labels)
    assert list(locked.iterdir()) == []


def test_failure_after_encoding_removes_the_temp_file(
    speech_clip: tuple[np.ndarray, int], labels: ClipLabels, tmp_path: Path
) -> None:
    """The final rename fails (a directory holds the name) after ffmpeg has written the temp file."""
    (tmp_path / "clip.ogg").mkdir()
    with pytest.raises(AudioError):
        export_clip(*speech_clip, ExportFormat.OGG, tmp_path / "clip.ogg", labels)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.ogg"]


def test_suffix_must_match_format(speech_clip: tuple[np.ndarray, int], labels: ClipLabels, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.mp3"):
        export_clip(*speech_clip, ExportFormat.MP3, tmp_path / "clip.wav", labels)


def test_missing_ffmpeg_says_how_to_install(
    exports: dict[ExportFormat, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no ffprobe on PATH
    with pytest.raises(AudioError, match=r"ffprobe is not installed; run `make setup`"):
        probe(exports[ExportFormat.WAV])


def test_probe_reports_bit_rate_and_format(exports: dict[ExportFormat, Path]) -> None:
    info = probe(exports[ExportFormat.MP3])
    assert isinstance(info, ProbeInfo)
    assert info.format_name == "mp3"
    assert info.bit_rate is not None and 120_000 <= info.bit_rate <= 140_000  # 128k CBR plus tags


# Labels and disclosure texts: what the exported clip says about itself.


def test_label_date_is_utc_for_id3(labels: ClipLabels) -> None:
    assert labels.as_tags()["date"] == "2026-03-01T11:00:00"


@pytest.mark.parametrize("created_at", ["2026-03-01T12:00:00", "yesterday"])  # naive time; not ISO 8601
def test_label_needs_an_aware_iso_time(labels: ClipLabels, created_at: str) -> None:
    with pytest.raises(ProvenanceError, match="created_at"):
        ClipLabels(**{**labels.__dict__, "created_at": created_at})


def test_label_refuses_an_empty_notice(labels: ClipLabels) -> None:
    with pytest.raises(ProvenanceError, match="ai_notice"):
        ClipLabels(**{**labels.__dict__, "ai_notice": "  "})


def test_ai_notice_template_with_unknown_placeholder_is_refused() -> None:
    with pytest.raises(ProvenanceError, match="owner"):
        ai_notice(owner="A", organisation="B", template="Made by {speaker}")


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", "The following message is an AI-generated voice, made with the consent of Ann, published by Org."),
        ("en-GB", "The following message is an AI-generated voice, made with the consent of Ann, published by Org."),
        ("ur", "درج ذیل پیغام مصنوعی ذہانت سے بنائی گئی آواز میں ہے، جو Ann کی رضامندی سے تیار کی گئی ہے۔ یہ پیغام Org نے شائع کیا ہے۔"),
    ],
)
def test_disclosure_text_builtins(lang: str, expected: str) -> None:
    assert disclosure_text(lang, owner="Ann", organisation="Org") == expected


def test_disclosure_text_configured_template_wins() -> None:
    text = disclosure_text("en", owner="Ann", organisation="Org", templates={"en": "Synthetic voice of {owner}."})
    assert text == "Synthetic voice of Ann."


def test_disclosure_text_unknown_language_says_how_to_configure() -> None:
    with pytest.raises(InputError, match=r"\[render\.disclosure_texts\]"):
        disclosure_text("fr", owner="Ann", organisation="Org")


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack("<4sI", data[pos : pos + 8])
        chunks.append((cid, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


def _ffprobe_tags(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)["format"].get("tags", {})
