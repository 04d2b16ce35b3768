"""The `voxgate` command: one typer app, one module per noun, joined here."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli import (
    audit, clips, disclosure, jobs, keys, migrate, portal, registry, review, statements, training, users, verify,
    voices,
)
from pipeline.cli.output import HOME_DEFAULT, AsUser, Home, fail, handles_errors, success
from pipeline.errors import InputError, VoxgateError
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
    all_: Annotated[bool, typer.Option("--all", help="Render every text-approved statement, and take over renders "
                                                     "whose worker died, until none is left.")] = False,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Synthesise text-approved statements into labelled, watermarked draft clips.

    Each render is a durable job on the `render` queue, rendered here (this command runs the queue while it
    waits) or by any `voxgate worker` that takes it first; the progress bar follows it either way. Any number
    of `render --all` and workers may run at once, on one machine or several sharing a PostgreSQL store: each
    statement is rendered exactly once. A render whose worker died is resumed after its last finished step.
    """
    from pipeline.cli.rendering import follow, print_renders, render_jobs
    from pipeline.services.job_worker import JobWorker
    from pipeline.services.render import claimable
    from pipeline.services.render_jobs import check_renderable, held_by_jobs
    from pipeline.services.tools import Tools
    from pipeline.services.workspace import open_workspace, utcnow
    from pipeline.store.scratch import sweep

    if (statement_id is None) == (not all_):
        raise InputError("Give one statement id, or --all.")
    ws = open_workspace(home)
    if statement_id is not None:
        check_renderable(ws, statement_id, as_user)  # refused here, before any job exists
    sweep(ws.home)  # the temp folders of renders and copies whose process died
    if statement_id is not None and follow(ws, statement_id):
        return

    def wanted() -> list[int]:  # with --all, the jobs of workers that died too: resumed here, at once on this host
        return [statement_id] if statement_id is not None else sorted({*claimable(ws, utcnow()), *held_by_jobs(ws)})

    results, failures, taken, tried = [], [], [], set()
    with JobWorker(ws, Tools(), queues=("render",)):
        while todo := [sid for sid in wanted() if sid not in tried]:
            tried.update(todo)
            done, refused, others = render_jobs(ws, todo, as_user)
            results, failures, taken = results + done, failures + refused, taken + others
    if statement_id is not None and failures:
        raise failures[0][1]
    if not results and not failures:
        success("Nothing to render: no statement is text-approved"
                + (f" (another worker took {len(taken)})." if taken else "."))
        return
    print_renders(results, failures)
    if failures:
        raise typer.Exit(1)


RETRY_AFTER_S = 600.0


@app.command("worker")
@handles_errors
def worker(
    poll: Annotated[float, typer.Option(help="Seconds between looks for statements to render.")] = 5.0,
    queues: Annotated[str, typer.Option(help="The queues this worker takes, comma-separated: render (statements "
                                             "to synthesise), copies (personal copies, videos and captions queued at release).")]
    = "render,copies",
    concurrency: Annotated[int, typer.Option(help="Copy jobs at once (each encodes its formats in parallel).")] = 1,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Render statements as they are text-approved and make the copies queued at release, until stopped (Ctrl-C or
    SIGTERM).

    Run one per machine or GPU (renders one at a time; `--queues copies` on CPU machines). Resumes the render and
    copy jobs of workers that died, after their last finished step: at once for a process gone from this host,
    within 50 s of the last heartbeat of a worker on another machine.
    """
    import signal
    import time

    from pipeline.cli.rendering import print_renders, render_jobs
    from pipeline.services.job_worker import QUEUES, JobWorker
    from pipeline.services.render import claimable
    from pipeline.services.tools import Tools
    from pipeline.services.workspace import open_workspace, utcnow
    from pipeline.store.scratch import sweep

    taken = [q.strip() for q in queues.split(",") if q.strip()]
    if not taken or any(q not in QUEUES for q in taken):
        raise InputError(f"--queues takes {' and/or '.join(QUEUES)}, comma-separated (e.g. --queues copies), "
                         f"not {queues!r}.")
    if concurrency < 1:
        raise InputError("--concurrency must be 1 or more.")
    ws, tools = open_workspace(home), Tools()
    sweep(ws.home)  # before the queues resume a job whose process died mid-step
    failed_at: dict[int, float] = {}  # a statement whose render failed is tried again after RETRY_AFTER_S
    with JobWorker(ws, tools, queues=tuple(taken), concurrency=concurrency):
        # A process started in the background by a shell or a service manager inherits SIGINT ignored, and Python
        # then installs no Ctrl-C handler: set both stop signals explicitly (after the queues started, so
        # they are ours), and the worker stops the same way everywhere.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        success(f"Worker started on {ws.home} ({', '.join(taken)}); Ctrl-C stops it.")
        try:
            while True:
                sweep(ws.home)
                if "render" in taken:
                    now = time.monotonic()
                    todo = [sid for sid in claimable(ws, utcnow())
                            if now - failed_at.get(sid, -RETRY_AFTER_S) >= RETRY_AFTER_S]
                    if todo:
                        results, failures, _taken = render_jobs(ws, todo, as_user)
                        failed_at.update((sid, time.monotonic()) for sid, _exc in failures)
                        print_renders(results, failures)
                time.sleep(poll)
        except KeyboardInterrupt:
            success("Worker stopped; a job it had begun is resumed by the next worker that looks, after its last "
                    "finished step.")


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
