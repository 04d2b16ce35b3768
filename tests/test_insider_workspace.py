"""Insider attacks on the workspace's files and on `voxgate pull`: each test replays one hole of issue 10.

- Workspace files were created 0644/0755: premasters and the database readable by every account.
- `voxgate pull` wrote where a hostile server's clip id pointed (`x/../../escaped`).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DEMO_VOICE, ORG, PEOPLE
from pipeline.cli.main import app as cli
from pipeline.services import users, voices
from pipeline.services.workspace import init_workspace, open_workspace, utcnow


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(home: Path) -> dict[str, int]:
    """Every path under `home` (and `home`) with its permission bits."""
    found = {".": stat.S_IMODE(home.stat().st_mode)}
    for path in home.rglob("*"):
        found[str(path.relative_to(home))] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.mark.parametrize("mask", [0o022, 0o000])  # the usual umask, and the most permissive one
def test_workspace_is_private_whatever_the_umask(tmp_path, mask) -> None:
    with umask(mask):
        ws, _ = init_workspace(tmp_path / "ws", ORG, now=utcnow())
        for name, role in PEOPLE.items():
            users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
        voices.add_voice(ws, DEMO_VOICE, actor="ops", now=utcnow())
        ws.files.put(DEMO_VOICE / "voice.toml")  # a blob, as a premaster is stored
    found = modes(ws.home)
    assert (ws.home / "voxgate.db").exists() and any(k.startswith("blobs/") for k in found)
    assert not (ws.home / "keys" / "users").exists()  # people's keys live in their own key folders, never here
    loose = {path: oct(mode) for path, mode in found.items()
             if mode != (0o700 if (ws.home / path).is_dir() else 0o600)}
    assert loose == {}


def test_opening_an_old_workspace_closes_it_to_other_accounts(tmp_path) -> None:
    ws, _ = init_workspace(tmp_path / "ws", ORG, now=utcnow())
    os.chmod(ws.home, 0o755)  # as voxgate before this fix left it
    os.chmod(ws.home / "voxgate.db", 0o644)
    open_workspace(ws.home)
    assert stat.S_IMODE(ws.home.stat().st_mode) == 0o700
    assert stat.S_IMODE((ws.home / "voxgate.db").stat().st_mode) == 0o600


class HostilePortal(BaseHTTPRequestHandler):
    """A server that answers like a portal but names its clips with paths."""

    clip_ids: list[object] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/api/clips") and self.path.count("/") == 2:
            body = json.dumps([{"id": cid, "released_at": "2026-01-01T00:00:00", "formats": ["mp3"]}
                               for cid in self.clip_ids]).encode()
        else:
            body = b"ID3 hostile bytes"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def hostile_portal(clip_ids: list[object]) -> Iterator[str]:
    handler = type("Handler", (HostilePortal,), {"clip_ids": clip_ids})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("clip_id", [
    "x/../../escaped",  # the example: a path that climbs out of --out
    "../escaped",
    "/tmp/escaped",  # an absolute path
    "7",  # a number as a string is still not the integer the portal sends
    7.5,
    True,  # JSON true is an int in Python; not a clip id
    -1,
])
def test_pull_refuses_a_clip_id_that_is_not_a_positive_integer(tmp_path, clip_id) -> None:
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with hostile_portal([1, clip_id]) as url:
        result = CliRunner().invoke(cli, ["pull", "--out", str(out), "--url", url, "--token", "vxg_x"])
    assert result.exit_code == 1, result.output
    assert "not a positive integer" in result.output and "Traceback" not in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_pull_writes_integer_clips_inside_out(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with hostile_portal([3]) as url:
        result = CliRunner().invoke(cli, ["pull", "--out", str(out), "--url", url, "--token", "vxg_x"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["voxgate-clip-3.mp3"]
