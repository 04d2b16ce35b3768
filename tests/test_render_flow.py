"""Rendering and release, end to end on the packaged voice: real synthesis, real files, real tools."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from conftest import voice_profile
from pipeline.domain import Decision
from pipeline.errors import ConsentError, EngineError, ProvenanceError, TransitionError
from pipeline.export.probe import decode, probe
from pipeline.audio.loudness import measure
from pipeline.quality.wer import word_error_rate
from pipeline.services import clips, review, statements
from pipeline.domain.serials import delivery_serial
from pipeline.services.auditing import audit_log, audit_verify
from pipeline.services.copies import payload_mark
from pipeline.services.deliveries import deliveries_of
from pipeline.services.render import _claim, claimable, render_statement
from pipeline.services.tools import Tools
from pipeline.services.voices import revoke_consent
from pipeline.services.workspace import utcnow
from pipeline.store.models import ClipRow

pytestmark = pytest.mark.slow
TEXT = "We ask the court to hear the case in public. Thank you for standing with us."


@pytest.fixture(scope="module")
def tools() -> Tools:
    """Engines, Perth and Whisper loaded once for the module, as a render worker would."""
    return Tools()


def approved(ws, text: str = TEXT, voice: str = "demo") -> int:
    sid = statements.submit(ws, voice_id=voice, purpose="public-statement", channel="social", language="en",
                            text=text, actor="sam", now=utcnow()).id
    review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
    review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
    return sid


def state_of(ws, sid: int) -> str:
    return statements.show_statement(ws, sid).state


def clip_rows(ws) -> list[ClipRow]:
    with ws.sessions() as s:
        return list(s.scalars(select(ClipRow)))


def test_render_release_export(workspace, tools, tmp_path) -> None:
    sid = approved(workspace)
    steps: list[str] = []
    result = render_statement(workspace, sid, tools, actor="rita", now=utcnow(), progress=steps.append)
    assert steps == ["claim", "synthesise", "loudness", "disclosure", "watermark", "export", "quality", "register"]
    assert state_of(workspace, sid) == "draft_ready"
    f = result.figures
    assert abs(f["integrated_lufs"] + 16) <= 0.5 and f["true_peak_dbtp"] <= -1.4
    # Both marks as read from the whole Ogg Opus export, the presence mark at the embedding threshold.
    assert f["presence_score"] >= 0.9 and f["payload_confidence"] >= 30 and f["wer"] <= 0.25
    assert f["duration_s"] > f["speech_s"] > 3  # the disclosure comes before the message

    # Exports are refused before release, then audio sign-off releases the clip.
    with pytest.raises(Exception, match="not released"):
        clips.export_clip(workspace, result.clip_id, "ogg", tmp_path, actor="dana", now=utcnow())
    row = review.decide(workspace, sid, Decision.APPROVE, actor="ravi", now=utcnow())
    assert row.state == "released"

    files = {fmt: clips.export_clip(workspace, result.clip_id, fmt, tmp_path, actor="dana", now=utcnow())
             for fmt in ("wav", "mp3", "ogg")}
    (dana,) = deliveries_of(workspace, result.clip_id)  # every export is the exporter's own marked copy
    codecs = {fmt: probe(p) for fmt, p in files.items()}
    assert codecs["wav"].codec.startswith("pcm_s16") and codecs["mp3"].codec == "mp3"
    assert codecs["ogg"].codec == "opus" and codecs["ogg"].sample_rate == 48000 and codecs["ogg"].channels == 1
    for fmt, info in codecs.items():
        assert info.tags.get("ai_generated") == "true", (fmt, info.tags)
        assert info.tags.get("voxgate_clip_id") == str(result.clip_id), (fmt, info.tags)
        samples, sr = decode(files[fmt])
        assert tools.presence_mark().detect(samples, sr) >= 0.5, fmt
        assert payload_mark(workspace).detect(samples, sr).payload == delivery_serial(dana.id), fmt
        loud = measure(samples, sr)
        assert abs(loud.integrated_lufs + 16) <= 0.7 and loud.clipped_samples == 0, (fmt, loud)
    # The words heard in the exported message are the approved words.
    samples, sr = decode(files["mp3"])
    start = int((f["duration_s"] - f["speech_s"]) * sr)
    heard = tools.asr().transcribe(samples[start:], sr).text
    assert word_error_rate(TEXT, heard) <= 0.25, heard

    actions = [e.action for e in audit_log(workspace)]
    for action in ("voxgate.statement.render_claimed", "voxgate.statement.rendered", "voxgate.statement.released",
                   "voxgate.clip.released", "voxgate.clip.exported"):
        assert action in actions
    assert audit_verify(workspace).ok


def test_revision_after_render_voids_the_draft(workspace, tools) -> None:
    sid = approved(workspace)
    render_statement(workspace, sid, tools, actor="rita", now=utcnow())
    statements.revise(workspace, sid, TEXT + " Stay strong.", actor="sam", now=utcnow())
    assert [c.state for c in clip_rows(workspace)] == ["superseded"]
    with pytest.raises(TransitionError):
        review.release(workspace, sid, actor="rita", now=utcnow())


def test_consent_revoked_mid_render_registers_nothing(workspace, tools) -> None:
    sid = approved(workspace)

    def revoke_during_export(step: str) -> None:
        if step == "export":
            revoke_consent(workspace, "demo", "owner withdrew", actor="joe-delegate", now=utcnow())

    with pytest.raises(ConsentError):
        render_statement(workspace, sid, tools, actor="rita", now=utcnow(), progress=revoke_during_export)
    assert state_of(workspace, sid) == "revoked"
    assert [c.state for c in clip_rows(workspace)] == ["failed"]
    assert audit_verify(workspace).ok


def test_render_fails_closed_without_the_watermarker(workspace, monkeypatch) -> None:
    """If Perth cannot be imported, nothing is produced and the statement goes back to the queue."""
    sid = approved(workspace)
    monkeypatch.setitem(sys.modules, "perth", None)  # `import perth` now raises ImportError
    with pytest.raises(ProvenanceError, match="Perth"):
        render_statement(workspace, sid, Tools(), actor="rita", now=utcnow())
    assert state_of(workspace, sid) == "text_approved"
    assert [c.state for c in clip_rows(workspace)] == ["failed"]
    assert not any(workspace.files.root.rglob("*")) or all(p.is_dir() for p in workspace.files.root.rglob("*"))
    assert any(e.action == "voxgate.statement.render_failed" for e in audit_log(workspace))


class OtherWords(Tools):
    """A voice model that says something other than the approved text (broken, or swapped by an insider): the real
    engine, speaking other words."""

    def engine(self, ref):
        return Saying(super().engine(ref), "Send the money to this account before the end of the day.")


class Saying:
    """`engine`, saying `said` for every sentence."""

    def __init__(self, engine, said: str) -> None:
        self.engine, self.said = engine, said

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def synthesize(self, sentences):
        return self.engine.synthesize([self.said for _ in sentences])


def test_speech_that_is_not_the_approved_text_is_refused_and_nothing_is_registered(workspace) -> None:
    sid = approved(workspace)
    with pytest.raises(ProvenanceError, match="Quality gate: the speech recogniser heard"):
        render_statement(workspace, sid, OtherWords(), actor="rita", now=utcnow())
    assert state_of(workspace, sid) == "text_approved"
    (clip,) = clip_rows(workspace)
    assert clip.state == "failed" and clip.files == []
    failed = [e for e in audit_log(workspace) if e.action == "voxgate.statement.render_failed"]
    assert "Quality gate" in failed[-1].data["reason"]


def test_a_produce_resumed_in_another_process_hears_the_premaster_and_refuses_the_wrong_words(workspace) -> None:
    from pipeline.services import render

    sid = approved(workspace)
    liar = OtherWords()
    clip_id, job = _claim(workspace, sid, actor="rita", now=utcnow(), worker="worker-a")
    synthesised = render.synthesise(workspace, clip_id, sid, job, liar)
    with pytest.raises(ProvenanceError, match="Quality gate"):
        render._HEARING.pop(clip_id).result()  # the verdict begun beside synthesis, lost with its process
    with pytest.raises(ProvenanceError, match="Quality gate"):  # resumed elsewhere: it hears the stored premaster
        render.produce(workspace, clip_id, sid, job, liar, synthesised, now=utcnow())
    with workspace.sessions() as s:
        assert s.get(ClipRow, clip_id).files == []


def test_swapped_model_file_is_refused_at_render(workspace, tools, tmp_path, piper_voice) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(piper_voice[0].read_bytes())
    (tmp_path / "model.onnx.json").write_bytes(piper_voice[1].read_bytes())
    folder = voice_profile(tmp_path, id='"copy"', path=f'"{model}"', config=f'"{model}.json"')
    from pipeline.services.voices import add_voice

    add_voice(workspace, folder, actor="ops", now=utcnow())
    sid = approved(workspace, voice="copy")
    with model.open("r+b") as f:  # one byte changed after enrollment
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EngineError, match="does not match the sha256"):
        render_statement(workspace, sid, tools, actor="rita", now=utcnow())
    assert state_of(workspace, sid) == "text_approved"


def test_a_crashed_render_is_reclaimed_after_the_stale_timeout(workspace, tools) -> None:
    sid = approved(workspace)
    _claim(workspace, sid, actor="rita", now=utcnow())  # the worker "dies" here
    assert claimable(workspace, utcnow()) == []
    later = utcnow() + timedelta(hours=1)
    assert claimable(workspace, later) == [sid]
    render_statement(workspace, sid, tools, actor="ravi", now=later)
    assert state_of(workspace, sid) == "draft_ready"
    assert sorted(c.state for c in clip_rows(workspace)) == ["draft", "failed"]


def test_video_and_captions_are_made_on_request_signed_and_verifiable(workspace, tools, tmp_path) -> None:
    from pipeline.services.verify import verify_file

    sid = approved(workspace)
    clip_id = render_statement(workspace, sid, tools, actor="rita", now=utcnow()).clip_id
    review.decide(workspace, sid, Decision.APPROVE, actor="ravi", now=utcnow())
    srt = clips.export_clip(workspace, clip_id, "srt", tmp_path, actor="dana", now=utcnow())
    cues = srt.read_text().strip().split("\n\n")
    assert len(cues) >= 2 and "We ask the court" in cues[0]
    video = clips.export_clip(workspace, clip_id, "mp4-square", tmp_path, actor="dana", now=utcnow())
    info = probe(video)
    assert video.name == f"voxgate-clip-{clip_id}.square.mp4" and info.tags.get("ai_generated") == "true"
    again = clips.export_clip(workspace, clip_id, "mp4-square", tmp_path / "..", actor="dana", now=utcnow())
    assert again.read_bytes() == video.read_bytes()  # made once, then served from the store
    assert verify_file(workspace, video, now=utcnow()).verdict.outcome.value == "AUTHENTIC"
