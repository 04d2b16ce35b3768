"""Fine-tuning on enrolled recordings only: data preparation, a tiny real VITS trained a few steps, resumption,
the slim model and its record, the voice update, and `voxgate voice train|test` through the CLI runner."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import typer
from fixtures_coqui import TINY_SAMPLE_RATE, EnrolledRecording, engine_clips, piper_clips, tiny_vits, tiny_xtts
from typer.testing import CliRunner

from pipeline.errors import ConsentError, EngineError, InputError
from pipeline.services.training import TrainingRun, TrainingStep, fine_tune, train_voice
from pipeline.synth import CoquiEngine, load_engine
from pipeline.train import xtts
from pipeline.train.checkpoint import VOXGATE_KEY, latest_checkpoint, resolve_base
from pipeline.train.dataset import ClipLimits, DropReason, prepare

XTTS_LIMITS = ClipLimits(xtts.SAMPLE_RATE, xtts.MIN_CLIP_S, xtts.MAX_WAV_SAMPLES / xtts.SAMPLE_RATE, xtts.MAX_TEXT_CHARS)
"""XTTS's GPT trainer skips clips over 255,995 samples (11.6 s) without saying so."""


def _recording(path: Path, transcript: str) -> EnrolledRecording:
    return EnrolledRecording(path, hashlib.sha256(path.read_bytes()).hexdigest(), transcript)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_vits(tmp_path_factory.getbasetemp() / "tiny-vits")[0]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, piper_voice: tuple[Path, Path]) -> tuple[EnrolledRecording, ...]:
    return piper_clips(tmp_path_factory.getbasetemp() / "piper-clips", piper_voice[0])


@pytest.fixture(scope="module")
def trained(base: Path, clips: Sequence[EnrolledRecording], tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[TrainingRun, list[TrainingStep]]:
    """Two steps of fine-tuning from the tiny base, interrupted after the first and resumed (as Ctrl+C and
    the same command again would), and every progress report both runs made.

    One run serves several tests because each trainer start and full checkpoint costs seconds on a CPU.
    """
    out = tmp_path_factory.mktemp("run")
    reports: list[TrainingStep] = []

    def interrupt_after_first_step(step: TrainingStep) -> None:
        reports.append(step)
        if step.step == 1:
            raise KeyboardInterrupt  # what Ctrl+C raises inside the trainer's loop

    with pytest.raises(KeyboardInterrupt):
        fine_tune(clips, str(base), out, steps=2, batch_size=3, progress=interrupt_after_first_step)
    assert latest_checkpoint(out) is not None and not (out / "model.pth").exists()
    return fine_tune(clips, str(base), out, steps=2, batch_size=3, progress=reports.append), reports


# --- data preparation (no torch) --------------------------------------------


def test_long_recording_is_split_at_the_pauses_between_its_sentences(
        clips: Sequence[EnrolledRecording], tmp_path: Path) -> None:
    parts, pause = [], np.zeros(int(0.5 * 22050), np.float32)
    for clip in clips[:5]:
        audio, rate = soundfile.read(clip.path, dtype="float32")
        parts += [audio, pause]
    path = tmp_path / "long.wav"
    soundfile.write(path, np.concatenate([pause, *parts]), rate)
    text = " ".join(c.transcript for c in clips[:5])
    report = prepare([_recording(path, text)], tmp_path / "data", ClipLimits(16_000, 1.0, 6.0, 200))
    assert report.split == 1 and not report.dropped
    assert " ".join(c.text for c in report.clips) == text, "every sentence once, in order"
    assert len(report.clips) >= 3 and all(1.0 <= c.duration_s <= 6.0 for c in report.clips)
    rate_written = soundfile.info(report.clips[0].path).samplerate
    assert rate_written == 16_000, "resampled to the model's rate"


def test_clips_outside_the_model_limits_are_counted_not_silently_lost(
        clips: Sequence[EnrolledRecording], tmp_path: Path) -> None:
    audio, rate = soundfile.read(clips[0].path, dtype="float32")
    # one sentence said eight times with no pause: about 14 s and nowhere to cut
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    run_on = tmp_path / "run-on.wav"
    soundfile.write(run_on, np.tile(audio[loud[0]: loud[-1]], 8), rate)
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(rate * 2, np.float32), rate)
    short = tmp_path / "short.wav"
    soundfile.write(short, audio[: rate // 2], rate)
    recordings = [_recording(run_on, " ".join([clips[0].transcript] * 8)), _recording(silent, "Nothing."),
                  _recording(short, "The"), clips[1]]
    report = prepare(recordings, tmp_path / "data", XTTS_LIMITS)
    assert len(report.clips) == 1
    assert report.dropped_by_reason() == {DropReason.TOO_LONG.value: 1, DropReason.SILENT.value: 1,
                                          DropReason.TOO_SHORT.value: 1}
    assert report.to_dict()["dropped_s"] > 14


def test_a_recording_changed_after_enrollment_is_refused(clips: Sequence[EnrolledRecording], tmp_path: Path) -> None:
    changed = tmp_path / "changed.wav"
    shutil.copyfile(clips[0].path, changed)
    with changed.open("r+b") as handle:
        handle.seek(-2, 2)
        handle.write(b"\x01\x02")
    enrolled_hash = EnrolledRecording(changed, clips[0].sha256, clips[0].transcript)
    with pytest.raises(ConsentError, match="not covered by the voice's enrollment"):
        prepare([clips[1], enrolled_hash], tmp_path / "data", XTTS_LIMITS)


# --- base models ------------------------------------------------------------


def test_a_coqui_model_name_offline_says_how_to_pass_a_local_path(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))  # an empty Coqui model cache
    with pytest.raises(EngineError, match="network is off.*--base /path/to/model_folder"):
        resolve_base("tts_models/en/ljspeech/vits")


def test_an_unknown_base_is_an_input_error() -> None:
    with pytest.raises(InputError, match="neither an existing path nor a Coqui model name"):
        resolve_base("my-favourite-voice")


def test_a_multi_speaker_base_is_refused(base: Path, clips: Sequence[EnrolledRecording], tmp_path: Path) -> None:
    shutil.copyfile(base, tmp_path / "model.pth")
    config = json.loads(base.with_name("config.json").read_text())
    config["model_args"]["use_speaker_embedding"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="single-speaker models only"):
        fine_tune(clips, str(tmp_path), tmp_path / "run", steps=1)


# --- fine-tuning ------------------------------------------------------------


@pytest.mark.slow
def test_fine_tuned_model_is_slim_and_speaks_through_the_engine(trained: tuple[TrainingRun, list]) -> None:
    trained, _ = trained
    checkpoint = torch.load(trained.model_path, map_location="cpu", weights_only=True)
    assert "optimizer" not in checkpoint and not any(k.startswith("disc.") for k in checkpoint["model"])
    assert trained.model_bytes < 10e6, "generator only: the trainer's checkpoint with discriminator is ~180 MB"
    engine = CoquiEngine(trained.model_path, trained.config_path)
    engine.load()
    assert engine.sample_rate == TINY_SAMPLE_RATE
    for audio in engine.synthesize(["The hearing is on Tuesday.", "Thank you."]):
        assert audio.size > 0 and np.all(np.isfinite(audio))


@pytest.mark.slow
def test_training_reports_progress_and_records_the_run(trained: tuple[TrainingRun, list[TrainingStep]],
                                                       clips: Sequence[EnrolledRecording]) -> None:
    trained, progress = trained
    assert all(p.loss_name == "loss_mel" and np.isfinite(p.loss) for p in progress)
    record = json.loads(trained.record_path.read_text())
    assert record["steps"] == 2 and record["batch_size"] == 3 and record["device"] == trained.device
    assert record["data"]["source_sha256"] == sorted(c.sha256 for c in clips)
    assert record["base"]["kind"] == "vits" and len(record["base"]["sha256"]) == 64
    assert record["model"]["sha256"] == trained.model_sha256
    assert [entry["step"] for entry in record["losses"]] == [1, 2]


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_last_checkpoint(trained: tuple[TrainingRun, list[TrainingStep]]
                                                             ) -> None:
    run, reports = trained
    assert (run.resumed_from, run.steps) == (1, 2)
    assert [(p.step, p.total) for p in reports] == [(1, 2), (2, 2)], "the resumed run starts at step 2"
    record = json.loads(run.record_path.read_text())
    assert record["resumed_from_step"] == 1
    assert [entry["step"] for entry in record["losses"]] == [1, 2], "the first step's loss survives the interrupt"


@pytest.mark.gpu
@pytest.mark.slow
def test_fine_tuning_uses_the_gpu_when_present(base: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False")
    clips = engine_clips(tmp_path / "clips", base, base.with_name("config.json"))  # no Piper voice on GPU machines
    run = fine_tune(clips, str(base), tmp_path / "run", steps=2, batch_size=3)
    assert run.device == "cuda" and run.steps == 2


@pytest.mark.slow
def test_xtts_gpt_fine_tunes_and_carries_the_voice_conditioning(
        clips: Sequence[EnrolledRecording], tmp_path_factory: pytest.TempPathFactory) -> None:
    # a tiny random XTTS laid out like coqui/XTTS-v2: the real weights cannot be fetched here
    base_folder = tiny_xtts(tmp_path_factory.getbasetemp() / "tiny-xtts")
    run = fine_tune(clips, str(base_folder), tmp_path_factory.mktemp("xtts-run"), steps=1, batch_size=2)
    assert run.steps == 1 and (run.run_dir / "vocab.json").is_file()
    block = torch.load(run.model_path, map_location="cpu", weights_only=True, mmap=True)[VOXGATE_KEY]
    assert block["language"] == "en" and set(block["speaker"]) == {"gpt_cond_latent", "speaker_embedding"}
    engine = CoquiEngine(run.model_path)
    engine.load()
    assert engine.sample_rate == 24_000
    audio, empty = engine.synthesize(["Hello there.", "..."])
    assert audio.size > 0 and np.all(np.isfinite(audio)) and empty.size == 0


def test_an_xtts_model_without_the_voice_conditioning_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    base_folder = tiny_xtts(tmp_path_factory.getbasetemp() / "tiny-xtts")
    with pytest.raises(EngineError, match="carries no speaker conditioning"):
        CoquiEngine(base_folder / "model.pth").load()


# --- the voice: service and CLI ---------------------------------------------


@pytest.fixture
def enrollment(workspace, clips: Sequence[EnrolledRecording], monkeypatch: pytest.MonkeyPatch
               ) -> list[EnrolledRecording]:
    """The demo voice's enrollment: the Piper clips, copied into the workspace.

    Stands in for `pipeline.services.recordings.enrolled_recordings` so these
    tests need not run a whole enrollment (consent script, recordings,
    signatures); it returns what that API returns: (path, sha256, transcript).
    """
    folder = workspace.home / "enrollment" / "demo"
    folder.mkdir(parents=True)
    recordings = []
    for clip in clips:
        shutil.copyfile(clip.path, folder / clip.path.name)
        recordings.append(EnrolledRecording(folder / clip.path.name, clip.sha256, clip.transcript))
    from pipeline.services import recordings as module

    monkeypatch.setattr(module, "enrolled_recordings",
                        lambda ws, voice_id: list(recordings) if voice_id == "demo" else [])
    return recordings


def _cli() -> typer.Typer:
    """The two commands as `cli/main.py` registers them on the voice group."""
    from pipeline.cli import training as commands

    app = typer.Typer()
    app.command("train")(commands.train)
    app.command("test")(commands.test)
    return app


def test_recordings_outside_the_workspace_are_refused(workspace, enrollment: list[EnrolledRecording],
                                                      clips: Sequence[EnrolledRecording], base: Path) -> None:
    enrollment.append(clips[0])  # the original lies in the test's temp folder, not the workspace
    with pytest.raises(ConsentError, match="not covered by the voice's enrollment: it lies outside the workspace"):
        train_voice(workspace, "demo", str(base), steps=1, actor="ops")


def test_only_an_admin_may_train(workspace, enrollment: list[EnrolledRecording], base: Path) -> None:
    from pipeline.errors import PermissionError_

    with pytest.raises(PermissionError_):
        train_voice(workspace, "demo", str(base), steps=1, actor="sam")


@pytest.mark.slow
def test_voice_train_points_the_voice_at_the_model_and_audits_it(
        workspace, enrollment: list[EnrolledRecording], base: Path) -> None:
    from sqlalchemy import select

    from pipeline.services.voices import model_ref, show_voice
    from pipeline.store.models import AuditRow

    runner = CliRunner()
    result = runner.invoke(_cli(), ["train", "demo", "--base", str(base), "--steps", "1", "--batch-size", "3",
                                    "--home", str(workspace.home), "--as", "ops"])
    assert result.exit_code == 0, result.output
    assert "Trained demo" in result.output and "model sha256" in result.output
    voice, _ = show_voice(workspace, "demo")
    assert (voice.engine, voice.state) == ("coqui", "trained")
    ref = model_ref(voice, workspace)
    assert ref.model_path.is_relative_to(workspace.voice_dir("demo"))
    assert load_engine(ref).synthesize(["Hello."])[0].size > 0
    with workspace.sessions() as s:
        event = s.scalars(select(AuditRow).where(AuditRow.action == "voxgate.voice.trained")).one()
    assert event.data["model_sha256"] == voice.model_sha256
    assert event.data["data_sha256"] == sorted(r.sha256 for r in enrollment)

    # the untrained tiny model speaks noise: the test fails it and the voice stays "trained"
    result = runner.invoke(_cli(), ["test", "demo", "--home", str(workspace.home), "--as", "ops"])
    assert result.exit_code == 1 and "does not pass" in result.output
    assert show_voice(workspace, "demo")[0].state == "trained"


@pytest.mark.slow
def test_voice_test_prints_quality_figures_for_a_good_voice(workspace, enrollment: list[EnrolledRecording]) -> None:
    # the demo voice is the packaged Piper voice, which also spoke the enrollment clips
    result = CliRunner().invoke(_cli(), ["test", "demo", "--home", str(workspace.home), "--as", "rita"])
    assert result.exit_code == 0, result.output
    assert "WER" in result.output and "similarity" in result.output and "passes" in result.output
