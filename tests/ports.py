"""Loopback ports for the servers the tests start (portal, nginx, SeaweedFS).

A port picked free can be taken by another test process before the server
binds it; the server then exits, and `started` starts it again on fresh ports.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started(start: Callable[[], T], tries: int = 3) -> T:
    """`start()`, which picks its ports afresh each call and raises RuntimeError when its server exits, tried up
    to `tries` times."""
    for attempt in range(tries):
        try:
            return start()
        except RuntimeError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")
