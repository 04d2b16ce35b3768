"""`voxgate serve` (the distributors' portal and public verify page) and `voxgate pull` (its command-line client)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import Progress

from pipeline.cli.output import HOME_DEFAULT, Home, handles_errors, print_table, success
from pipeline.errors import InputError, PermissionError_, StoreError
from pipeline.store.files import atomic_write_stream


@handles_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    home: Home = HOME_DEFAULT,
) -> None:
    """Start the distributors' portal and the public /verify page."""
    import uvicorn

    from pipeline.portal.app import create_app

    app = create_app(home)
    success(f"voxgate portal for {app.state.workspace.config.organisation} on http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@handles_errors
def pull(
    out: Annotated[Path, typer.Option(help="Folder to write the clips into.")] = Path("."),
    since: Annotated[Optional[str], typer.Option(help="Only clips released at or after this ISO date/time.")] = None,
    format: Annotated[str, typer.Option("--format", help="wav, mp3, ogg, m4a, mp4-square, mp4-vertical, "
                                                         "mp4-landscape, srt or vtt.")] = "mp3",
    url: Annotated[str, typer.Option(envvar="VOXGATE_PORTAL", help="The portal's address.")] = "http://127.0.0.1:8000",
    token: Annotated[Optional[str], typer.Option(envvar="VOXGATE_TOKEN", help="Your access token (or VOXGATE_TOKEN).")] = None,
) -> None:
    """Download your own copies of released clips from the portal with your distributor token."""
    from pipeline.services.clips import EXTENSIONS

    if not token:
        raise PermissionError_("No token; pass --token or set VOXGATE_TOKEN (ask an admin for one).")
    if not out.is_dir():
        raise InputError(f"{out} is not a folder; create it first.")
    if format not in EXTENSIONS:
        raise InputError(f"Unknown format {format!r}; choose one of {', '.join(EXTENSIONS)}.")
    query = "?" + urllib.parse.urlencode({"since": since}) if since else ""
    clips = json.loads(_get(f"{url.rstrip('/')}/api/clips{query}", token).read())
    written = []
    with Progress() as bar:
        task = bar.add_task("downloading", total=len(clips))
        for clip in clips:
            if format in clip["formats"]:
                dest = out / f"voxgate-clip-{clip['id']}.{EXTENSIONS[format]}"
                if format == "ogg":  # its content credentials first, so the file never appears without them
                    with _get(f"{url.rstrip('/')}/api/clips/{clip['id']}/ogg.c2pa", token) as response:
                        atomic_write_stream(response, dest.with_name(dest.name + ".c2pa"))
                with _get(f"{url.rstrip('/')}/api/clips/{clip['id']}/{format}", token) as response:
                    atomic_write_stream(response, dest)
                written.append((clip["id"], clip["released_at"], dest.name))
            bar.advance(task)
    print_table(f"Pulled {len(written)} clips", ["clip", "released", "file"], written)


def _get(address: str, token: str):  # noqa: ANN202 - an HTTP response
    request = urllib.request.Request(address, headers={"Authorization": f"Bearer {token}"})
    try:
        return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - the operator's own portal
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        if exc.code in (401, 403):
            raise PermissionError_(f"The portal refused the token ({exc.code}): {detail}") from None
        raise StoreError(f"The portal answered {exc.code} for {address}: {detail}") from None
    except urllib.error.URLError as exc:
        raise StoreError(f"Cannot reach the portal at {address} ({exc.reason}); is `voxgate serve` running?") from None
