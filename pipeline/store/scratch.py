"""Job folders: the temporary workspace of one render, copy or video, named for the process that made it.

A job that finishes removes its folder. A job whose process was killed
(`kill -9`, a power cut) cannot, so the folder's name carries the process id
and a tag of the host: `sweep` removes the folders of processes on this host
that no longer run. Folders from another host (a shared workspace) are left
to that host's own sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

KINDS: Final = ("render", "copy", "video")
_NAME: Final = re.compile(r"^voxgate-(?P<kind>[a-z]+)-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-")


def host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


@contextlib.contextmanager
def job_folder(home: Path, kind: str) -> Iterator[Path]:
    """A fresh folder in `home` for one job of `kind`, removed when the job ends (or swept if it dies)."""
    assert kind in KINDS, kind
    with tempfile.TemporaryDirectory(prefix=f"voxgate-{kind}-{os.getpid()}-{host_tag()}-", dir=home) as tmp:
        yield Path(tmp)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep(home: Path) -> list[str]:
    """Remove the job folders of dead processes on this host; returns their names."""
    here, swept = host_tag(), []
    for folder in sorted(home.glob("voxgate-*-*")):
        found = _NAME.match(folder.name)
        if not folder.is_dir() or found is None or found["kind"] not in KINDS or found["host"] != here:
            continue
        if not pid_alive(int(found["pid"])):
            shutil.rmtree(folder, ignore_errors=True)
            swept.append(folder.name)
            log.info("swept %s: its process %s is gone", folder.name, found["pid"])
    return swept
