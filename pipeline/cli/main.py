"""The `voxgate` command: one typer app, one module per noun, joined here."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipeline.cli import (
    audit, clips, disclosure, jobs, keys, migrate, portal, registry, review, statements, training, users, verify,
    voices,
)
from pipeline.cli.output import HOME_DEFAULT, AsUser, Home, fail, handles_errors, print_table, success
from pipeline.errors import InputError, TransitionError, VoxgateError
from pipeline.identity.personal import KEYS_ENV

app = typer.Typer(
    name="voxgate",
    help="Consent-gated synthetic voice messages: submit, review, render, label, release, verify.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
voices.app.command("train")(training.train)
voices.app.command("test")(training.test)
app.add_typer(keys.app, name="key")
app.add_typer(users.app, name="user")
app.add_typer(voices.app, name="voice")
app.add_typer(voices.consent_app, name="consent")
app.add_typer(statements.app, name="statements")
app.add_typer(review.app, name="review")
app.add_typer(clips.app, name="clips")
app.add_typer(audit.app, name="audit")
app.add_typer(jobs.app, name="jobs")
app.add_typer(disclosure.app, name="disclosure")
app.add_typer(registry.app, name="registry")
app.command("submit")(handles_errors(statements.submit))
app.command("revise")(handles_errors(statements.revise))
app.command("withdraw")(handles_errors(statements.withdraw))
app.command("serve")(portal.serve)
app.command("pull")(portal.pull)
app.command("verify")(verify.verify)
app.command("migrate")(migrate.migrate)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    keys_dir: Annotated[Optional[Path], typer.Option(
        "--keys", help="Your key folder (or $VOXGATE_KEYS; default ~/.config/voxgate/keys).")] = None,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")
    if keys_dir is not None:  # the one place the key folder is chosen; every workspace opened reads it from here
        os.environ[KEYS_ENV] = str(keys_dir.expanduser())


@app.command("init")
@handles_errors
def init(
    home: Home = HOME_DEFAULT,
    org: Annotated[str, typer.Option(help="Organisation name, as consent records name it.")] = "voxgate workspace",
    c2pa_cert: Annotated[Optional[Path], typer.Option(help="Your own C2PA chain (PEM: signing certificate first, CA last).")] = None,
    c2pa_key: Annotated[Optional[Path], typer.Option(help="The signing certificate's unencrypted P-256 key (PEM).")] = None,
    database_url: Annotated[Optional[str], typer.Option(
        help="Keep the store in this empty PostgreSQL database (postgresql://USER@HOST/DB) instead of SQLite.")] = None,
    files_url: Annotated[Optional[str], typer.Option(
        help="Keep the files in this S3-compatible bucket prefix (s3://BUCKET/PREFIX) instead of the blobs folder.")]
    = None,
) -> None:
    """Create a workspace: store (SQLite, or PostgreSQL), file store, config, the organisation's keys and C2PA identity."""
    from pipeline.services.workspace import init_workspace, utcnow

    if (c2pa_cert is None) != (c2pa_key is None):
        raise InputError("Give both --c2pa-cert and --c2pa-key, or neither (a workspace CA is then generated).")
    c2pa = (c2pa_cert, c2pa_key) if c2pa_cert and c2pa_key else None
    ws, created = init_workspace(home, org, now=utcnow(), c2pa=c2pa, database_url=database_url,
                                 files_url=files_url, say=lambda m: success(m + "."))
    if created:
        success(f"Created workspace {ws.home} for {ws.config.organisation}. Next: `voxgate user add NAME --role admin`.")
    else:
        success(f"Workspace {ws.home} already exists; nothing else changed.")


@app.command("render")
@handles_errors
def render(
    statement_id: Annotated[Optional[int], typer.Argument(help="Statement to render.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Render every text-approved statement, and reclaim renders "
                                                     "whose worker died, until none is left.")] = False,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Synthesise text-approved statements into labelled, watermarked draft clips.

    Any number of `render --all` may run at once, on one machine or several sharing a PostgreSQL store:
    each statement is rendered by exactly one of them. `render ID` of a statement another worker is
    rendering follows that render's progress (and takes it over if that worker dies meanwhile).
    """
    from pipeline.services.tools import Tools
    from pipeline.services.workspace import open_workspace
    from pipeline.store.scratch import sweep

    if (statement_id is None) == (not all_):
        raise InputError("Give one statement id, or --all.")
    ws = open_workspace(home)
    sweep(ws.home)  # the temp folders of renders and copies whose process died
    if statement_id is not None and _follow(ws, statement_id):
        return
    results, failures, taken = _render_queue(ws, Tools(), None if all_ else statement_id, as_user)
    if not results and not failures:
        success("Nothing to render: no statement is text-approved"
                + (f" (another worker took {len(taken)})." if taken else "."))
        return
    _print_renders(results, failures)
    if failures:
        raise typer.Exit(1)


RETRY_AFTER_S = 600.0
FOLLOW_POLL_S = 0.5


def _render_columns() -> tuple:  # type: ignore[type-arg]
    """A render's progress bar, whether this process renders or follows another worker's render."""
    return (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn())


def _follow(ws, statement_id: int) -> bool:  # type: ignore[no-untyped-def]
    """Show the progress of another worker's running render of `statement_id` until it ends; False if no live
    worker holds it (or its worker died meanwhile: then this process takes the render over)."""
    import time

    from pipeline.errors import EngineError
    from pipeline.services.jobs import following, list_jobs
    from pipeline.services.render import STEPS
    from pipeline.services.workspace import utcnow

    job = following(ws, statement_id, utcnow())
    if job is None:
        return False
    typer.echo(f"Statement {statement_id} is being rendered by worker {job.worker}; following it.")
    with Progress(*_render_columns()) as bar:
        task = bar.add_task(f"statement {statement_id}", total=len(STEPS))
        while True:
            (now_job,) = [j for j in list_jobs(ws, statement_id=statement_id, limit=None) if j.clip_id == job.clip_id]
            status = now_job.status(utcnow())
            if status == "running":
                step = now_job.step or STEPS[0]
                bar.update(task, completed=STEPS.index(step) if step in STEPS else 0,
                           description=f"statement {statement_id}: {step}")
                time.sleep(FOLLOW_POLL_S)
                continue
            if status == "worker lost":
                bar.update(task, description=f"statement {statement_id}: its worker stopped answering")
                return False  # claimable now: this process renders it
            break
    if now_job.state == "failed":
        raise EngineError(f"Statement {statement_id}'s render by {job.worker} failed: {now_job.error or 'no reason'}; "
                          f"see `voxgate jobs show {statement_id}`.")
    success(f"Statement {statement_id} rendered by {job.worker}: clip {job.clip_id} ({now_job.state}).")
    return True



QUEUES = ("render", "copies")


@app.command("worker")
@handles_errors
def worker(
    poll: Annotated[float, typer.Option(help="Seconds between looks at the queue when it is empty.")] = 5.0,
    queues: Annotated[str, typer.Option(help="The queues this worker takes, comma-separated: render (statements "
                                             "to synthesise), copies (personal copies queued at release).")]
    = "render,copies",
    concurrency: Annotated[int, typer.Option(help="Copy jobs at once (each encodes its formats in parallel).")] = 1,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Render statements as they are text-approved and make the copies queued at release, until stopped (Ctrl-C or
    SIGTERM).

    Run one per machine or GPU. Takes over the renders and copy jobs of workers that died (60 s after their
    last sign of life; at once for a copy job whose process is gone from this host).
    """
    import signal
    import time
    from contextlib import ExitStack

    from pipeline.services.tools import Tools
    from pipeline.services.workspace import open_workspace
    from pipeline.store.scratch import sweep

    taken = [q.strip() for q in queues.split(",") if q.strip()]
    if not taken or any(q not in QUEUES for q in taken):
        raise InputError(f"--queues takes {' and/or '.join(QUEUES)}, comma-separated (e.g. --queues copies), "
                         f"not {queues!r}.")
    if concurrency < 1:
        raise InputError("--concurrency must be 1 or more.")
    ws, tools = open_workspace(home), Tools()
    sweep(ws.home)  # before the copies queue recovers a job whose process died mid-copy
    failed_at: dict[int, float] = {}  # a statement whose render failed is tried again after RETRY_AFTER_S
    with ExitStack() as stack:
        if "copies" in taken:
            from pipeline.services.copy_worker import CopyWorker

            stack.enter_context(CopyWorker(ws, tools, concurrency=concurrency))
        # A process started in the background by a shell or a service manager inherits SIGINT ignored, and Python
        # then installs no Ctrl-C handler: set both stop signals explicitly (after the copies queue started, so
        # they are ours), and the worker stops the same way everywhere.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        success(f"Worker started on {ws.home} ({', '.join(taken)}); Ctrl-C stops it.")
        try:
            while True:
                sweep(ws.home)
                if "render" in taken:
                    now = time.monotonic()
                    skip = {sid for sid, at in failed_at.items() if now - at < RETRY_AFTER_S}
                    results, failures, _taken = _render_queue(ws, tools, None, as_user, skip=skip)
                    failed_at.update((sid, time.monotonic()) for sid, _exc in failures)
                    _print_renders(results, failures)
                time.sleep(poll)
        except KeyboardInterrupt:
            success("Worker stopped; a render it had begun is reclaimed by another worker within 60 s, "
                    "and a copy it had begun is finished by the next worker that looks.")


def _render_queue(ws, tools, statement_id: int | None, as_user: str | None,  # type: ignore[no-untyped-def]
                  skip: set[int] | None = None):
    """Render `statement_id`, or everything claimable (but `skip`) until nothing is left; (results, failures, taken)."""
    from pipeline.services.render import STEPS, claimable, render_statement, worker_id
    from pipeline.services.workspace import utcnow

    me = worker_id()
    results, failures, taken = [], [], []
    tried: set[int] = set(skip or ())

    def todo() -> list[int]:
        return [i for i in (claimable(ws, utcnow()) if statement_id is None else [statement_id]) if i not in tried]

    if not (ids := todo()):
        return results, failures, taken  # nothing to show: an idle worker's poll prints nothing
    with Progress(*_render_columns(), transient=False) as bar:
        while ids:
            for sid in ids:
                tried.add(sid)
                task = bar.add_task(f"statement {sid}", total=len(STEPS))

                def step(name: str, task: int = task, sid: int = sid) -> None:
                    bar.update(task, completed=STEPS.index(name), description=f"statement {sid}: {name}")

                try:
                    results.append(render_statement(ws, sid, tools, actor=as_user, now=utcnow(), progress=step,
                                                    worker=me))
                    bar.update(task, completed=len(STEPS), description=f"statement {sid}: draft ready")
                except VoxgateError as exc:
                    if statement_id is not None:
                        raise
                    if isinstance(exc, TransitionError) and sid not in claimable(ws, utcnow()):
                        taken.append(sid)  # another worker claimed it first, or took it over: theirs now
                        bar.update(task, description=f"statement {sid}: taken by another worker")
                        continue
                    failures.append((sid, exc))
            ids = todo()
    return results, failures, taken


def _print_renders(results, failures) -> None:  # type: ignore[no-untyped-def]
    if results:
        print_table("Rendered drafts", ["statement", "clip", "duration", "LUFS", "true peak", "watermark", "WER"], [
            (r.statement_id, r.clip_id, f"{r.figures['duration_s']:.1f} s", r.figures["integrated_lufs"],
             r.figures["true_peak_dbtp"], r.figures["presence_score"], r.figures.get("wer"))
            for r in results])
    for sid, exc in failures:
        typer.echo(f"statement {sid}: {type(exc).__name__}: {exc}", err=True)


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
    lang: Annotated[str, typer.Option("--lang", help="en: the embedded English demo voice; ur: the Urdu flow on "
                                      "espeak-ng's robotic Urdu voice.")] = "en",
) -> None:
    """Run the whole flow end to end on the embedded demo voice (`--lang ur`: in Urdu)."""
    if lang == "ur":
        from pipeline.cli.demo_ur import run_demo_ur

        run_demo_ur(home)
        return
    if lang != "en":
        raise InputError(f"The demo runs in en or ur, not {lang!r}.")
    from pipeline.cli.demo import run_demo

    run_demo(home)


def main() -> None:
    try:
        app()
    except VoxgateError as exc:  # raised outside a command (should not happen, but never show a traceback)
        fail(exc)


__all__ = ["app", "main"]

if __name__ == "__main__":  # python -m pipeline.cli.main, as the tests' worker processes run it
    main()
