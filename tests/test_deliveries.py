"""Personal copies: serials, one copy per recipient under concurrent requests, and refusals that register nothing."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from conftest import store_snapshot
from pipeline.cli.main import app as cli
from pipeline.domain.serials import DELIVERY_BASE, clip_serial, delivery_serial, parse_serial
from pipeline.errors import ConsentError, InputError, ProvenanceError
from pipeline.services import clips
from pipeline.provenance.payload import MAX_STRENGTH, PayloadMark
from pipeline.services.copies import MASTER_RATE, check_marks_in, mark_serial
from pipeline.services.deliveries import COPY_PRESENCE_EXCERPT_S, deliveries_of
from pipeline.services.tools import Tools
from pipeline.services.workspace import utcnow
from pipeline.store.models import ClipRow
from portal_fixtures import build_released

# --- serials, pure ---------------------------------------------------------------------------


def test_clip_and_delivery_serials_never_overlap() -> None:
    assert parse_serial(clip_serial(7)).delivery is None and parse_serial(7).value == 7
    assert parse_serial(delivery_serial(7)).delivery == 7 and delivery_serial(7) == DELIVERY_BASE + 7
    assert parse_serial(DELIVERY_BASE - 1).delivery is None
    assert parse_serial(2**32 - 1).delivery == DELIVERY_BASE - 1


@pytest.mark.parametrize("make, value", [(clip_serial, 0), (clip_serial, DELIVERY_BASE), (delivery_serial, 0),
                                         (delivery_serial, DELIVERY_BASE), (parse_serial, 2**32), (parse_serial, -1)])
def test_serials_out_of_range_are_refused(make, value) -> None:
    with pytest.raises(InputError):
        make(value)


# --- a copy's marks -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech(speech_clip):
    """About 24 s of speech at the master rate and loudness, not marked."""
    from pipeline.audio.loudness import normalise
    from pipeline.audio.mix import resample

    samples, rate = speech_clip
    return normalise(resample(np.tile(samples, 4), rate, MASTER_RATE), MASTER_RATE)


@pytest.fixture(scope="module")
def premaster(speech):
    """The speech presence-marked, as a render leaves its premaster."""
    return Tools().presence_mark().embed(speech, MASTER_RATE)


def opus(samples: np.ndarray, path: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(MASTER_RATE), "-ac", "1", "-i", "pipe:0",
                    "-c:a", "libopus", "-b:a", "32k", str(path)], input=samples.astype("<f4").tobytes(), check=True)
    return path


@pytest.mark.slow
def test_a_copy_marked_at_its_renders_strength_is_the_copy_a_read_back_would_make(premaster) -> None:
    """A copy skips the read-back after embedding by taking the strength its render's read-back chose."""
    presence, mark = Tools().presence_mark(), PayloadMark(b"k" * 32)
    verified, figures = mark_serial(premaster, 7, presence, mark, target_lufs=-16, true_peak_dbtp=-1.5)
    at_once, _ = mark_serial(premaster, 7, presence, mark, target_lufs=-16, true_peak_dbtp=-1.5, read_back=False,
                             strength=figures["payload_strength"])
    assert figures["payload_strength"] == MAX_STRENGTH  # plain speech: the first strength read back
    assert np.array_equal(verified, at_once)


@pytest.mark.slow
def test_a_copys_ogg_is_read_for_both_marks_and_refused_without_either(speech, premaster, tmp_path) -> None:
    """The presence mark is read from ten seconds in the middle of a copy's Ogg, the serial from all of it."""
    from pipeline.audio.loudness import normalise

    presence, mark = Tools().presence_mark(), PayloadMark(b"k" * 32)
    copy, _ = mark_serial(premaster, 7, presence, mark, target_lufs=-16, true_peak_dbtp=-1.5, read_back=False)
    read = check_marks_in(opus(copy, tmp_path / "copy.ogg"), 7, presence, mark, "copy", COPY_PRESENCE_EXCERPT_S)
    assert read["presence_score"] >= 0.9 and read["payload_confidence"] > 30
    with pytest.raises(ProvenanceError, match="payload watermark"):
        check_marks_in(tmp_path / "copy.ogg", 8, presence, mark, "copy", COPY_PRESENCE_EXCERPT_S)
    with pytest.raises(ProvenanceError, match=r"presence watermark scored .* \(needs 1.01\)"):  # a render asks for more
        check_marks_in(tmp_path / "copy.ogg", 7, presence, mark, "copy", COPY_PRESENCE_EXCERPT_S,
                       presence_threshold=1.01)
    no_presence = normalise(mark.embed(speech, MASTER_RATE, 7), MASTER_RATE)  # a serial, but no presence mark
    with pytest.raises(ProvenanceError, match="presence watermark"):
        check_marks_in(opus(no_presence, tmp_path / "unmarked.ogg"), 7, presence, mark, "copy", COPY_PRESENCE_EXCERPT_S)


# --- personal copies on a real workspace ---------------------------------------------------------


BOTH_DATABASES = True


@pytest.fixture(scope="module")
def released(tmp_path_factory, module_database_url):
    return build_released(tmp_path_factory.mktemp("deliveries"), module_database_url)


@pytest.mark.slow
def test_concurrent_first_downloads_make_one_copy(released) -> None:
    tools = Tools()

    def download(_: int) -> bytes:
        handover = clips.open_download(released.ws, released.clip_id, "ogg", actor="dana", now=utcnow(), tools=tools)
        assert handover.sidecar is not None  # Ogg's content credentials travel with it
        return handover.path.read_bytes()

    with ThreadPoolExecutor(4) as pool:
        copies = set(pool.map(download, range(4)))
    assert len(copies) == 1
    (delivery,) = deliveries_of(released.ws, released.clip_id)
    assert delivery.recipient == "dana"
    assert sorted(f.format for f in delivery.files) == ["m4a", "mp3", "ogg", "ogg.c2pa", "wav"]
    listed = CliRunner().invoke(cli, ["clips", "copies", str(released.clip_id), "--json",
                                      "--home", str(released.ws.home)])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["recipient"], row["serial"]) == ("dana", delivery_serial(delivery.id)) and "ogg" in row["formats"]


@pytest.mark.slow
def test_a_revoked_clip_gets_no_copy_and_nothing_is_registered(released) -> None:
    before = store_snapshot(released.ws.home)
    with pytest.raises(ConsentError, match="revoked"):
        clips.open_download(released.ws, released.revoked_clip_id, "mp3", actor="dana", now=utcnow())
    assert store_snapshot(released.ws.home) == before and deliveries_of(released.ws, released.revoked_clip_id) == []


@pytest.mark.slow
def test_a_clip_without_a_premaster_is_refused_before_anything_is_registered(released) -> None:
    ws = released.ws
    with ws.transaction() as s:
        premaster = s.get(ClipRow, released.clip_id).premaster_sha256
        s.execute(update(ClipRow).where(ClipRow.id == released.clip_id).values(premaster_sha256=None))
    try:
        before = store_snapshot(ws.home)
        with pytest.raises(ProvenanceError, match="render its statement again"):
            clips.open_download(ws, released.clip_id, "mp3", actor="ravi", now=utcnow())
        assert store_snapshot(ws.home) == before
    finally:
        with ws.transaction() as s:
            s.execute(update(ClipRow).where(ClipRow.id == released.clip_id).values(premaster_sha256=premaster))


@pytest.mark.slow
def test_a_copy_already_made_is_refused_once_consent_is_revoked(released) -> None:
    """Runs last here: it revokes the voice of the module's released clip."""
    from pipeline.services.voices import revoke_consent

    assert clips.open_download(released.ws, released.clip_id, "mp3", actor="dana", now=utcnow()).delivery
    revoke_consent(released.ws, "demo", "the owner withdrew consent", actor="joe-delegate", now=utcnow())
    before = store_snapshot(released.ws.home)
    with pytest.raises(ConsentError, match="consent"):
        clips.open_download(released.ws, released.clip_id, "mp3", actor="dana", now=utcnow())
    assert store_snapshot(released.ws.home) == before
