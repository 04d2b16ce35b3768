"""`voxgate disclosure …`: the announcers that speak the audible disclosure, per language."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import (
    HOME_DEFAULT,
    AsJson,
    AsUser,
    Home,
    handles_errors,
    print_json,
    print_table,
    success,
)
from pipeline.services import announcers as svc
from pipeline.services.workspace import open_workspace, utcnow

app = typer.Typer(help="Announcers for the audible disclosure: a recorded reading, an announcer model, or espeak-ng.",
                  no_args_is_help=True)

Lang = Annotated[str, typer.Option("--lang", help="Language the disclosure is in (ur, en, …).")]


@app.command("add")
@handles_errors
def add(
    file: Annotated[Path, typer.Argument(help="A person reading the disclosure text (WAV or any audio ffmpeg reads).")],
    lang: Lang,
    voice: Annotated[str, typer.Option("--voice", help="The voice whose disclosure it is (the text names its owner).")],
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Register a recorded disclosure: checked for loudness, length, speech and (where a recogniser exists) words."""
    from pipeline.services.tools import Tools

    row = svc.add_recording(open_workspace(home), lang, voice, file, Tools(), actor=as_user, now=utcnow())
    success(f"Recorded disclosure {row.sha256[:12]} registered for {row.language!r} ({voice}); renders use it verbatim.")


@app.command("model")
@handles_errors
def model(
    onnx: Annotated[Path, typer.Argument(help="A Piper voice .onnx, with its .onnx.json beside it.")],
    lang: Lang,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Register an announcer model (never the model of a consenting voice); both files are pinned by sha256."""
    row = svc.add_model(open_workspace(home), lang, onnx, actor=as_user, now=utcnow())
    success(f"Announcer model {Path(row.path or '').name} ({row.sha256[:12]}) registered for {row.language!r}.")


@app.command("list")
@handles_errors
def list_(home: Home = HOME_DEFAULT, as_json: AsJson = False) -> None:
    """Registered announcers (espeak-ng, the last resort, needs no registration)."""
    rows = svc.list_announcers(open_workspace(home))
    data = [{"id": r.id, "language": r.language, "kind": r.kind, "voice": r.voice_id, "sha256": r.sha256,
             "path": r.path, "retired": r.retired_at is not None} for r in rows]
    if as_json:
        print_json(data)
        return
    print_table("Announcers", ["id", "language", "kind", "voice", "sha256", "path"],
                [(d["id"], d["language"], d["kind"], d["voice"] or "", d["sha256"][:12], d["path"] or "") for d in data])
