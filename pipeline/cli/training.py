"""`voxgate voice train` and `voxgate voice test`: fine-tune a voice on its enrollment, then measure it.

Two command functions, registered on the `voice` group by `cli/main.py`.
Torch and Coqui load inside the services, so `voxgate --help` stays fast.
"""

from __future__ import annotations

import math
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.cli.output import HOME_DEFAULT, AsUser, Home, console, err_console, handles_errors, print_table, success
from pipeline.services.training import DEFAULT_BATCH_SIZE, DEFAULT_STEPS


@handles_errors
def train(
    voice_id: Annotated[str, typer.Argument(help="Voice to fine-tune, on its enrolled recordings only.")],
    base: Annotated[str, typer.Option(
        "--base", help="Base model: a checkpoint file, a model folder, or a Coqui name (tts_models/en/ljspeech/vits).")],
    steps: Annotated[int, typer.Option(help="Training steps in all, counting any done before an interruption.")]
    = DEFAULT_STEPS,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per step.")] = DEFAULT_BATCH_SIZE,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Fine-tune a voice's model on its enrolled recordings (resumes an interrupted run)."""
    from pipeline.services.training import TrainingStep, train_voice
    from pipeline.services.workspace import open_workspace

    ws = open_workspace(home)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
               TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"training {voice_id}", total=steps, loss="")

        def show(step: TrainingStep) -> None:
            loss = f"{step.loss_name} {step.loss:.3f}" if math.isfinite(step.loss) else ""
            bar.update(task, completed=step.step, loss=loss)

        try:
            run = train_voice(ws, voice_id, base, steps=steps, batch_size=batch_size, actor=as_user, progress=show)
        except KeyboardInterrupt:
            bar.stop()
            err_console.print(f"Training interrupted; the steps done are saved. Run the same command again to "
                              f"continue: voxgate voice train {voice_id} --base {base} --steps {steps}")
            raise typer.Exit(130) from None
    report = run.dataset
    print_table(f"Trained {voice_id}", ["figure", "value"], [
        ("steps", f"{run.steps}" + (f" (resumed at {run.resumed_from})" if run.resumed_from is not None else "")),
        ("device", run.device),
        ("time per step", "" if run.mean_step_s is None else f"{run.mean_step_s:.2f} s"),
        ("clips", f"{len(report.clips)} from {report.recordings} recordings, {report.kept_s:.1f} s"),
        ("dropped", ", ".join(f"{n} {why}" for why, n in report.dropped_by_reason().items()) or "none"),
        ("model", f"{run.model_path} ({run.model_bytes / 1e6:.1f} MB)"),
        ("model sha256", run.model_sha256),
        ("record", str(run.record_path)),
    ])
    success(f"Voice {voice_id} now speaks with the fine-tuned model. Next: `voxgate voice test {voice_id}`.")


@handles_errors
def test(
    voice_id: Annotated[str, typer.Argument(help="Voice to test.")],
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Render test sentences in a voice and print recognition WER, speaker similarity, duration and loudness."""
    from pipeline.services.training import MIN_SIMILARITY, evaluate_voice
    from pipeline.services.workspace import open_workspace

    with console.status(f"Rendering and measuring test sentences in {voice_id}…"):
        result = evaluate_voice(open_workspace(home), voice_id, actor=as_user)

    def fmt(value: float | None, pattern: str) -> str:
        return "n/a" if value is None else format(value, pattern)

    rate = result.measure.upper()
    print_table(f"Voice {voice_id} on {result.device}", ["sentence", "duration", rate, "similarity", "LUFS"], [
        (f.sentence, f"{f.duration_s:.2f} s", fmt(f.wer, ".2f"), fmt(f.similarity, ".3f"), fmt(f.lufs, ".1f"))
        for f in result.sentences
    ] + [("mean", "", fmt(result.mean_wer, ".2f"), fmt(result.mean_similarity, ".3f"), "")])
    verdict = f"mean {rate} at most {result.max_error:g} and similarity at least {MIN_SIMILARITY}"
    if result.recogniser is not None:
        console.print(f"Recognised by {result.recogniser}.", highlight=False)
    if result.passed:
        success(f"Voice {voice_id} passes ({verdict}); state: {result.state}.")
    else:
        advice = ("Train longer or enrol more recordings." if result.mean_wer is not None else
                  f"No recogniser covers {result.language!r}, so no error rate was measured and the voice cannot "
                  f"pass; declare one for {result.language!r} under [recognisers] in voxgate.toml (see the README).")
        err_console.print(f"Voice {voice_id} does not pass ({verdict}); state: {result.state}. {advice}")
        raise typer.Exit(1)
