"""The `voxgate` command: one typer app, one module per noun, joined here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipeline.cli import audit, clips, portal, registry, review, statements, training, users, verify, voices
from pipeline.cli.output import HOME_DEFAULT, AsUser, Home, fail, handles_errors, print_table, success
from pipeline.errors import InputError, VoxgateError

app = typer.Typer(
    name="voxgate",
    help="Consent-gated synthetic voice messages: submit, review, render, label, release, verify.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
voices.app.command("train")(training.train)
voices.app.command("test")(training.test)
app.add_typer(users.app, name="user")
app.add_typer(voices.app, name="voice")
app.add_typer(voices.consent_app, name="consent")
app.add_typer(statements.app, name="statements")
app.add_typer(review.app, name="review")
app.add_typer(clips.app, name="clips")
app.add_typer(audit.app, name="audit")
app.add_typer(registry.app, name="registry")
app.command("submit")(handles_errors(statements.submit))
app.command("revise")(handles_errors(statements.revise))
app.command("withdraw")(handles_errors(statements.withdraw))
app.command("serve")(portal.serve)
app.command("pull")(portal.pull)
app.command("verify")(verify.verify)


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")


@app.command("init")
@handles_errors
def init(
    home: Home = HOME_DEFAULT,
    org: Annotated[str, typer.Option(help="Organisation name, as consent records name it.")] = "voxgate workspace",
    c2pa_cert: Annotated[Optional[Path], typer.Option(help="Your own C2PA chain (PEM: signing certificate first, CA last).")] = None,
    c2pa_key: Annotated[Optional[Path], typer.Option(help="The signing certificate's unencrypted P-256 key (PEM).")] = None,
) -> None:
    """Create a workspace: SQLite store, file store, config, the organisation's keys and C2PA identity."""
    from pipeline.services.workspace import init_workspace, utcnow

    if (c2pa_cert is None) != (c2pa_key is None):
        raise InputError("Give both --c2pa-cert and --c2pa-key, or neither (a workspace CA is then generated).")
    c2pa = (c2pa_cert, c2pa_key) if c2pa_cert and c2pa_key else None
    ws, created = init_workspace(home, org, now=utcnow(), c2pa=c2pa, say=lambda m: success(m + "."))
    if created:
        success(f"Created workspace {ws.home} for {ws.config.organisation}. Next: `voxgate user add NAME --role admin`.")
    else:
        success(f"Workspace {ws.home} already exists; nothing else changed.")


@app.command("render")
@handles_errors
def render(
    statement_id: Annotated[Optional[int], typer.Argument(help="Statement to render.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Render every text-approved statement.")] = False,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Synthesise text-approved statements into labelled, watermarked draft clips."""
    from pipeline.services.render import STEPS, Tools, claimable, render_statement
    from pipeline.services.workspace import open_workspace, utcnow

    if (statement_id is None) == (not all_):
        raise InputError("Give one statement id, or --all.")
    ws = open_workspace(home)
    ids = claimable(ws, utcnow()) if all_ else [statement_id]
    if not ids:
        success("Nothing to render: no statement is text-approved.")
        return
    tools, results, failures = Tools(), [], []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        for sid in ids:
            task = bar.add_task(f"statement {sid}", total=len(STEPS))

            def step(name: str, task: int = task, sid: int = sid) -> None:
                bar.update(task, completed=STEPS.index(name), description=f"statement {sid}: {name}")

            try:
                results.append(render_statement(ws, sid, tools, actor=as_user, now=utcnow(), progress=step))
                bar.update(task, completed=len(STEPS), description=f"statement {sid}: draft ready")
            except VoxgateError as exc:
                if not all_:
                    raise
                failures.append((sid, exc))
    if results:
        print_table("Rendered drafts", ["statement", "clip", "duration", "LUFS", "true peak", "watermark", "WER"], [
            (r.statement_id, r.clip_id, f"{r.figures['duration_s']:.1f} s", r.figures["integrated_lufs"],
             r.figures["true_peak_dbtp"], r.figures["presence_score"], r.figures.get("wer"))
            for r in results])
    for sid, exc in failures:
        typer.echo(f"statement {sid}: {type(exc).__name__}: {exc}", err=True)
    if failures:
        raise typer.Exit(1)


@app.command("release")
@handles_errors
def release(statement_id: int, home: Home = HOME_DEFAULT, as_user: AsUser = None) -> None:
    """Retry the release of an audio-approved statement (consent and approvals are checked again)."""
    from pipeline.services.review import release as release_
    from pipeline.services.workspace import open_workspace, utcnow

    row = release_(open_workspace(home), statement_id, actor=as_user, now=utcnow())
    success(f"Statement {row.id} released.")


@app.command("demo")
@handles_errors
def demo(
    home: Annotated[Optional[str], typer.Option(help="Workspace folder to use (default: a fresh temporary one).")] = None,
) -> None:
    """Run the whole flow end to end on the embedded demo voice."""
    from pipeline.cli.demo import run_demo

    run_demo(home)


def main() -> None:
    try:
        app()
    except VoxgateError as exc:  # raised outside a command (should not happen, but never show a traceback)
        fail(exc)


__all__ = ["app", "main"]
