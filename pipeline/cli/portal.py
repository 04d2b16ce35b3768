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
from pipeline.store.files import SHARED_MODE, atomic_write_stream


@handles_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    trusted_proxy: Annotated[Optional[list[str]], typer.Option(
        "--trusted-proxy", help="A reverse proxy (IP or network) whose X-Forwarded-For/-Proto to believe; "
                                "repeat for several. Default: none.")] = None,
    origin: Annotated[Optional[str], typer.Option(
        help="The address people open the portal at; passkeys are bound to it. Default: http://localhost:PORT.")]
    = None,
    https: Annotated[bool, typer.Option("--https", help="The portal is reached over HTTPS through a TLS proxy: "
                                                        "cookies are sent only over HTTPS (Secure).")] = False,
    copies: Annotated[bool, typer.Option("--copies/--no-copies", help="Also make the personal copies queued at "
                                                                      "release, in this process.")] = True,
    accel_redirect: Annotated[Optional[str], typer.Option(
        help="nginx in front serves the workspace's blobs folder at this internal location (e.g. /_voxgate/blobs/): "
             "a checked download is handed to it by X-Accel-Redirect, its bytes never pass through Python.")] = None,
    home: Home = HOME_DEFAULT,
) -> None:
    """Start the distributors' portal, the reviewers' pages and the public /verify page."""
    import uvicorn

    from pipeline.portal.app import create_app
    from pipeline.portal.server import checked_proxies, server_config

    proxies = checked_proxies(trusted_proxy or [])  # refused before the workspace is opened
    app = create_app(home, https=https, origin=origin or f"http://localhost:{port}", accel_redirect=accel_redirect)
    scheme = "https" if https else "http"
    success(f"voxgate portal for {app.state.workspace.config.organisation} on {scheme}://{host}:{port}/"
            + (f" (trusting forwarded headers from {', '.join(proxies)})" if proxies else ""))
    server = uvicorn.Server(server_config(app, host=host, port=port, trusted_proxies=proxies))
    if not copies:
        server.run()
        return
    from pipeline.services.job_worker import JobWorker

    with JobWorker(app.state.workspace, app.state.tools, queues=("copies",)):  # the portal's models, loaded once
        server.run()


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
    clips = _clip_list(_get(f"{url.rstrip('/')}/api/clips{query}", token).read())
    out = out.resolve()
    written = []
    with Progress() as bar:
        task = bar.add_task("downloading", total=len(clips))
        for clip in clips:
            if format in clip["formats"]:
                dest = _inside(out, f"voxgate-clip-{clip['id']}.{EXTENSIONS[format]}")
                if format == "ogg":  # its content credentials first, so the file never appears without them
                    with _get(f"{url.rstrip('/')}/api/clips/{clip['id']}/ogg.c2pa", token) as response:
                        atomic_write_stream(response, dest.with_name(dest.name + ".c2pa"), mode=SHARED_MODE)
                with _get(f"{url.rstrip('/')}/api/clips/{clip['id']}/{format}", token) as response:
                    atomic_write_stream(response, dest, mode=SHARED_MODE)
                written.append((clip["id"], clip["released_at"], dest.name))
            bar.advance(task)
    print_table(f"Pulled {len(written)} clips", ["clip", "released", "file"], written)


def _clip_list(body: bytes) -> list[dict]:
    """The portal's clip list, refused whole unless every clip id is a plain integer.

    The id goes into a file name and a URL: a hostile or broken server's `x/../../escaped`
    must never choose where a file lands.
    """
    try:
        clips = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise StoreError("The portal's clip list is not JSON; check --url points at a voxgate portal.") from None
    if not isinstance(clips, list) or not all(isinstance(c, dict) for c in clips):
        raise StoreError("The portal's clip list is not a list of clips; check --url points at a voxgate portal.")
    for clip in clips:
        cid = clip.get("id")
        if type(cid) is not int or cid < 1:  # bool is an int subclass: type(), not isinstance()
            raise StoreError(f"The portal sent a clip id {str(cid)[:40]!r} that is not a positive integer; nothing "
                             "was written. Check --url points at your organisation's portal.")
        if not isinstance(clip.get("formats"), list) or not isinstance(clip.get("released_at"), str):
            raise StoreError(f"The portal's entry for clip {cid} lacks its formats or release time; nothing was "
                             "written.")
    return clips


def _inside(folder: Path, name: str) -> Path:
    """`folder / name`, refused unless it is a plain file name directly inside `folder`."""
    dest = (folder / name).resolve()
    if dest.parent != folder or name != dest.name:
        raise StoreError(f"Refusing to write {name!r}: it is not a plain file name inside {folder}.")
    return dest


def _get(address: str, token: str):  # noqa: ANN202 - an HTTP response
    request = urllib.request.Request(address)
    # Never sent on to where the portal redirects a download (a presigned object-store link carries its own proof).
    request.add_unredirected_header("Authorization", f"Bearer {token}")
    try:
        return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - the operator's own portal
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        if exc.code in (401, 403):
            raise PermissionError_(f"The portal refused the token ({exc.code}): {detail}") from None
        raise StoreError(f"The portal answered {exc.code} for {address}: {detail}") from None
    except urllib.error.URLError as exc:
        raise StoreError(f"Cannot reach the portal at {address} ({exc.reason}); is `voxgate serve` running?") from None
