"""`voxgate clips …`: released clips for distributors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import HOME_DEFAULT, AsJson, AsUser, Home, handles_errors, print_json, print_table, success
from pipeline.services import clips as svc
from pipeline.services.workspace import open_workspace, utcnow

app = typer.Typer(help="Released clips: list, export, and who holds a copy.", no_args_is_help=True)


@app.command("list")
@handles_errors
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include drafts, superseded and revoked clips.")] = False,
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
) -> None:
    """List released clips (with --all, every clip)."""
    clips = svc.list_clips(open_workspace(home), include_all=all_)
    if as_json:
        print_json([{"id": c.id, "statement": c.statement_id, "revision": c.revision, "voice": c.voice_id,
                     "state": c.state, "audio_sha256": c.audio_sha256, "figures": c.figures,
                     "formats": [f.format for f in c.files], "released_at": c.released_at} for c in clips])
        return
    print_table("Clips", ["id", "statement", "voice", "state", "duration", "LUFS", "formats", "released"], [
        (c.id, c.statement_id, c.voice_id, c.state, f"{c.figures.get('duration_s', 0):.1f} s",
         c.figures.get("integrated_lufs"), ", ".join(f.format for f in c.files),
         f"{c.released_at:%Y-%m-%d %H:%M}" if c.released_at else "") for c in clips])


@app.command("export")
@handles_errors
def export(
    clip_id: int,
    format: Annotated[str, typer.Option("--format", help=f"One of: {', '.join(svc.EXTENSIONS)}.")] = "mp3",
    out: Annotated[Path, typer.Option(help="Folder to write the file into.")] = Path("."),
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Write a released clip in the given format: audio, MP4 video or captions (refused for revoked clips)."""
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"clip {clip_id}: {format}", total=1.0)
        dest = svc.export_clip(open_workspace(home), clip_id, format, out, actor=as_user, now=utcnow(),
                               progress=lambda done: bar.update(task, completed=done))
    success(f"Wrote {dest}")


@app.command("copies")
@handles_errors
def copies(
    clip_id: int,
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
) -> None:
    """Who holds their own copy of a clip: each delivery, its payload serial and the formats made."""
    from pipeline.domain.serials import delivery_serial
    from pipeline.services.deliveries import deliveries_of

    ws = open_workspace(home)
    svc.get_clip(ws, clip_id)  # a clear error for a clip that does not exist
    rows = [{"delivery": d.id, "recipient": d.recipient, "serial": delivery_serial(d.id),
             "formats": [f.format for f in d.files], "first": d.created_at} for d in deliveries_of(ws, clip_id)]
    if as_json:
        print_json(rows)
        return
    print_table(f"Personal copies of clip {clip_id}", ["delivery", "recipient", "payload serial", "formats", "first"],
                [(r["delivery"], r["recipient"], r["serial"], ", ".join(r["formats"]), f"{r['first']:%Y-%m-%d %H:%M}")
                 for r in rows])
