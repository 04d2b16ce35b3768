"""A throwaway nginx (Debian's `nginx`, which scripts/setup.sh installs) in front of a portal on loopback.

It proxies everything to the portal and serves the workspace's blob folder at
an internal location, as the README's "Several machines" section sets it up:
a checked download comes back from the portal as an `X-Accel-Redirect` to
that location, and nginx sends the file. Its config, logs and temp folders
live in a temp folder; it listens on a free port and is stopped on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ports import free_port, started

START_TIMEOUT_S = 30
ACCEL_PREFIX = "/_voxgate/blobs/"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found is None:
        raise RuntimeError("nginx is not installed; run scripts/setup.sh (it installs Debian's nginx).")
    return found


def config(port: int, portal: str, blobs: Path, folder: Path, extra: str = "") -> str:
    temp = "\n".join(f"  {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                            "scgi"))
    return f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
{temp}
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  server {{
    listen 127.0.0.1:{port};
    location {ACCEL_PREFIX} {{ internal; alias {blobs}/; }}
    location / {{
      proxy_pass {portal};
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
{extra}
  }}
}}
"""


@contextmanager
def fronting(portal: str, blobs: Path, extra: str = "") -> Iterator[str]:
    """nginx in front of the portal at `portal`, serving `blobs` at ACCEL_PREFIX (internal); yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="voxgate-nginx-"))

    def start() -> tuple[subprocess.Popen, int]:
        port = free_port()
        (folder / "nginx.conf").write_text(config(port, portal, blobs, folder, extra))
        process = subprocess.Popen([nginx_binary(), "-p", str(folder), "-c", str(folder / "nginx.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return process, port
            except OSError:
                if time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    break
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {process.stderr.read().decode(errors='replace')[-500:]}")

    process = None
    try:
        process, port = started(start)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)
